package main

// The live NBD endpoint: writable exports of a powered-off VM's disks, the stand-in for
// nbdkit-vddk opening a VM's disk without a snapshot (what a restore in place or a
// replication onto a VM writes through). Export names are "<vm>/<disk key>", the VM by name
// or moref (vcbt's {vm} placeholder is the moref); VDDK
// refuses to open a powered-on VM's disk for writing, and so does this endpoint
// (NBD_REP_ERR_POLICY with a message). Writes go through a real nbdkit (file plugin) into
// the disk's live state, and every write request (WRITE, WRITE_ZEROES, TRIM) is tracked by
// CBT exactly like a guest write, so QueryChangedDiskAreas since an earlier ChangeId lists it.
//
// Vocabulary:
//   - live link: a hard link "<vm>_<key>" in the live links directory to the live state's raw
//     image, made when a client names the export. The raw image is the truth behind the
//     control API's sha256/content, so nbdkit's writes show there at once.
//   - write session: one transmission-phase connection. The relay parses the client's
//     request stream (the 28-byte request headers of NBD without extended headers, which
//     nbdkit 1.32 does not offer) and tracks each write request before forwarding it; when
//     the connection ends (nbdkit has answered everything), a live delta state's extent is
//     brought up to date from the raw image for the written ranges.
//   - open writers: while a VM has write sessions, power-on and snapshot creation fail with
//     FileLocked, as ESXi refuses them while VDDK holds the disk.

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

const (
	nbdRequestMagic       = 0x25609513
	nbdRequestHeaderBytes = 28
	nbdCmdWrite           = 1
	nbdCmdTrim            = 4
	nbdCmdWriteZeroes     = 6
	nbdRepErrPolicy       = 0x80000002
)

var liveExportName = regexp.MustCompile(`^([^/]+)/([0-9]+)$`)

// writeSession tracks one connection's writes to one live disk state.
type writeSession struct {
	l      *lab
	lv     *labVm
	d      *labDisk
	state  *diskState
	ranges [][2]int64 // offset, length
}

// startLive starts the live endpoint serving links in dir.
func (l *lab) startLive(dir string) (*nbdExport, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e, err := l.exports.launch("live", false, routerHandshake(l.liveResolver(dir)), "file", "dir="+dir)
	if err != nil {
		return nil, err
	}
	e.writes = l.startWriteSession
	l.exports.live = e
	return e, nil
}

// liveUriTemplate is the live endpoint's URI with placeholders, as vcbt's --nbd-uri takes it.
func (e *nbdExport) liveUriTemplate() string {
	return e.uri() + "/{vm}/{disk}"
}

// liveTarget finds the VM and disk an export name names. Called with l.mu held.
func (l *lab) liveTarget(name string) (*labVm, *labDisk, string) {
	m := liveExportName.FindStringSubmatch(name)
	if m == nil {
		return nil, nil, fmt.Sprintf("no export %q: export names are <vm name or moref>/<disk key>", name)
	}
	lv := l.vms[m[1]]
	for _, v := range l.vms {
		if lv == nil && v.ref.Value == m[1] {
			lv = v
		}
	}
	if lv == nil {
		return nil, nil, fmt.Sprintf("no export %q: no VM named %q", name, m[1])
	}
	key, _ := strconv.ParseInt(m[2], 10, 32)
	d := lv.disk(int32(key))
	if d == nil {
		return nil, nil, fmt.Sprintf("no export %q: VM %s has no disk with key %s", name, lv.name, m[2])
	}
	return lv, d, ""
}

func (l *lab) liveResolver(dir string) nameResolver {
	return func(name string) (string, uint32, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		lv, d, why := l.liveTarget(name)
		if lv == nil {
			return "", nbdRepErrUnknown, why
		}
		if lv.poweredOn() {
			return "", nbdRepErrPolicy, fmt.Sprintf("VM %s is powered on: its disks cannot be opened for writing (power it off first)", lv.name)
		}
		link := linkName(lv.name, d.key)
		path := filepath.Join(dir, link)
		// Several connections of one client resolve the same name at once, and nbdkit opens the
		// link after this returns: replace it atomically (link a temporary name, rename it over)
		// so that a concurrent open never finds the name missing.
		tmp := fmt.Sprintf("%s.tmp-%d", path, time.Now().UnixNano())
		if err := os.Link(d.rawPath(d.live()), tmp); err != nil {
			return "", nbdRepErrUnknown, fmt.Sprintf("export %q: %v", name, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
			return "", nbdRepErrUnknown, fmt.Sprintf("export %q: %v", name, err)
		}
		return link, 0, ""
	}
}

// startWriteSession is called when a connection enters the transmission phase.
func (l *lab) startWriteSession(name string) *writeSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	lv, d, _ := l.liveTarget(name)
	if lv == nil || lv.poweredOn() {
		return nil
	}
	lv.openWriters++
	return &writeSession{l: l, lv: lv, d: d, state: d.live()}
}

// request tracks one write request of [offsetBytes, +lengthBytes) like a guest write.
func (ws *writeSession) request(offsetBytes, lengthBytes int64) {
	ws.l.mu.Lock()
	defer ws.l.mu.Unlock()
	if lengthBytes <= 0 || offsetBytes < 0 || offsetBytes >= ws.state.capacityBytes {
		return // nbdkit refuses it
	}
	if offsetBytes+lengthBytes > ws.state.capacityBytes {
		lengthBytes = ws.state.capacityBytes - offsetBytes
	}
	ws.d.track(ws.state, offsetBytes, lengthBytes)
	if ws.state.delta != nil {
		ws.ranges = append(ws.ranges, [2]int64{offsetBytes, lengthBytes})
	}
}

// done ends the session: a live delta takes the written ranges from the raw image.
func (ws *writeSession) done() {
	ws.l.mu.Lock()
	defer ws.l.mu.Unlock()
	ws.lv.openWriters--
	if ws.state.delta == nil || ws.d.indexOf(ws.state) < 0 {
		return
	}
	for _, r := range ws.ranges {
		if err := ws.state.delta.update(ws.d.rawPath(ws.state), r[0], r[1], 0); err != nil {
			fmt.Fprintf(os.Stderr, "vcbt-lab: NBD write to %s disk %d: delta update: %v\n", ws.lv.name, ws.d.key, err)
		}
	}
}

// copyUpTracked forwards the client's requests to nbdkit, tracking each write request
// before it is forwarded. A stream it cannot parse is forwarded as it is.
func copyUpTracked(server io.Writer, client io.Reader, ws *writeSession) {
	header := make([]byte, nbdRequestHeaderBytes)
	for {
		if _, err := io.ReadFull(client, header); err != nil {
			return
		}
		if binary.BigEndian.Uint32(header) != nbdRequestMagic {
			if _, err := server.Write(header); err == nil {
				_, _ = io.Copy(server, client)
			}
			return
		}
		command := binary.BigEndian.Uint16(header[6:])
		offsetBytes := int64(binary.BigEndian.Uint64(header[16:]))
		lengthBytes := int64(binary.BigEndian.Uint32(header[24:]))
		switch command {
		case nbdCmdWrite, nbdCmdTrim, nbdCmdWriteZeroes:
			ws.request(offsetBytes, lengthBytes)
		}
		if _, err := server.Write(header); err != nil {
			return
		}
		if command == nbdCmdWrite {
			if _, err := io.CopyN(server, client, lengthBytes); err != nil {
				return
			}
		}
	}
}
