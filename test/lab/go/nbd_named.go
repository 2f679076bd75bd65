package main

// The named NBD endpoint: one listener per lab whose export names are
// "<snapshot moref>/<disk key>" ("snapshot-79/2000"), each serving that snapshot's frozen
// disk read-only - the stand-in for an NBD server that exposes a snapshot's disks
// (`vcbt replicate --transport nbd --nbd-uri TEMPLATE`). Names resolve when a client asks,
// so snapshots created later work and removed ones answer NBD_REP_ERR_UNKNOWN.
//
// Vocabulary:
//   - link: a hard link to a frozen state's extent, made when the snapshot is taken, named
//     "<snapshot moref>_<disk key>" in the links directory. A frozen state's bytes never
//     change and consolidation only renames or deletes other names of the file, so the link
//     stays right until the lab deletes it with the snapshot.
//   - router: the relay's option-phase step. One nbdkit (file plugin, dir= mode) serves the
//     links directory by export name, but its names cannot contain "/": the router rewrites
//     names in the client's options ("snapshot-79/2000" -> "snapshot-79_2000") and in the
//     server's replies (back), answers an unknown name itself, and steps aside once the
//     transmission phase starts.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// NBD protocol constants (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
const (
	nbdOptMagic           = 0x49484156454F5054 // "IHAVEOPT"
	nbdReplyMagic         = 0x3e889045565a9
	nbdOptExportName      = 1
	nbdOptAbort           = 2
	nbdOptList            = 3
	nbdOptInfo            = 6
	nbdOptGo              = 7
	nbdOptListMetaContext = 9
	nbdOptSetMetaContext  = 10
	nbdRepAck             = 1
	nbdRepServer          = 2
	nbdRepInfo            = 3
	nbdRepErrUnknown      = 0x80000006
	nbdInfoName           = 1
	// The greeting nbdkit sends first: NBDMAGIC, IHAVEOPT, handshake flags.
	nbdGreetingBytes = 18
	// Options and replies in the option phase are small; anything larger is refused.
	maxOptionBytes = 1 << 20
)

var snapshotExportName = regexp.MustCompile(`^([A-Za-z0-9-]+)/([0-9]+)$`)

func linkName(snapshot string, diskKey int32) string {
	return fmt.Sprintf("%s_%d", snapshot, diskKey)
}

// linkOf maps an export name to its link name; ok is false for names of another shape.
func linkOf(exportName string) (string, bool) {
	m := snapshotExportName.FindStringSubmatch(exportName)
	if m == nil {
		return "", false
	}
	return m[1] + "_" + m[2], true
}

func exportNameOf(link string) string {
	i := strings.LastIndex(link, "_")
	if i < 0 {
		return link
	}
	return link[:i] + "/" + link[i+1:]
}

// startNamed starts the named endpoint serving the links in dir.
func (s *exportSet) startNamed(dir string) (*nbdExport, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e, err := s.launch("named", true, routerHandshake(snapshotResolver(dir)), "file", "dir="+dir)
	if err != nil {
		return nil, err
	}
	s.named = e
	return e, nil
}

// nbdUriTemplate is the named endpoint's URI with placeholders, as vcbt's --nbd-uri takes it.
func (e *nbdExport) nbdUriTemplate() string {
	return e.uri() + "/{snapshot}/{disk}"
}

var errExportNameUnknown = errors.New("unknown export name in NBD_OPT_EXPORT_NAME")

// nameResolver maps an export name to the link nbdkit serves it from; a refusal is the
// NBD error reply type and message the router answers instead.
type nameResolver func(exportName string) (link string, refusalType uint32, refusal string)

// snapshotResolver resolves "<snapshot moref>/<disk key>" to an existing snapshot link.
func snapshotResolver(dir string) nameResolver {
	return func(name string) (string, uint32, string) {
		if link, valid := linkOf(name); valid {
			if st, err := os.Stat(filepath.Join(dir, link)); err == nil && st.Mode().IsRegular() {
				return link, 0, ""
			}
		}
		return "", nbdRepErrUnknown, fmt.Sprintf("no export %q: export names are <snapshot moref>/<disk key> of an existing snapshot", name)
	}
}

// routerHandshake is the router (see the header). It returns the bytes sent to the client
// and the export name the client chose.
func routerHandshake(resolve nameResolver) func(client, server net.Conn) (int64, string, error) {
	return func(client, server net.Conn) (int64, string, error) {
		var sent int64
		chosen := ""
		toClient := func(b []byte) error {
			n, err := client.Write(b)
			sent += int64(n)
			return err
		}
		greeting := make([]byte, nbdGreetingBytes)
		if _, err := io.ReadFull(server, greeting); err != nil {
			return sent, chosen, err
		}
		if err := toClient(greeting); err != nil {
			return sent, chosen, err
		}
		clientFlags := make([]byte, 4)
		if _, err := io.ReadFull(client, clientFlags); err != nil {
			return sent, chosen, err
		}
		if _, err := server.Write(clientFlags); err != nil {
			return sent, chosen, err
		}
		for {
			header := make([]byte, 16)
			if _, err := io.ReadFull(client, header); err != nil {
				return sent, chosen, err
			}
			if binary.BigEndian.Uint64(header) != nbdOptMagic {
				return sent, chosen, fmt.Errorf("NBD option without IHAVEOPT magic")
			}
			option := binary.BigEndian.Uint32(header[8:])
			data, err := readBounded(client, binary.BigEndian.Uint32(header[12:]))
			if err != nil {
				return sent, chosen, err
			}
			if name, rebuild, ok := optionExportName(option, data); ok {
				link, refusalType, refusal := resolve(name)
				if link == "" {
					switch option {
					case nbdOptExportName:
						// The protocol has no error reply here: the server closes.
						return sent, chosen, errExportNameUnknown
					case nbdOptInfo, nbdOptGo:
						if err := toClient(optionReply(option, refusalType, []byte(refusal))); err != nil {
							return sent, chosen, err
						}
						continue
					}
					link = strings.ReplaceAll(name, "/", "_")
				}
				if option == nbdOptExportName || option == nbdOptGo {
					chosen = name
				}
				data = rebuild(link)
			}
			binary.BigEndian.PutUint32(header[12:], uint32(len(data)))
			if _, err := server.Write(append(header, data...)); err != nil {
				return sent, chosen, err
			}
			if option == nbdOptExportName {
				// nbdkit answers with the export's size and flags: transmission begins.
				return sent, chosen, nil
			}
			for {
				replyHeader := make([]byte, 20)
				if _, err := io.ReadFull(server, replyHeader); err != nil {
					return sent, chosen, err
				}
				replyType := binary.BigEndian.Uint32(replyHeader[12:])
				reply, err := readBounded(server, binary.BigEndian.Uint32(replyHeader[16:]))
				if err != nil {
					return sent, chosen, err
				}
				reply = replyWithExportNames(option, replyType, reply)
				binary.BigEndian.PutUint32(replyHeader[16:], uint32(len(reply)))
				if err := toClient(append(replyHeader, reply...)); err != nil {
					return sent, chosen, err
				}
				if replyType != nbdRepAck && replyType&0x80000000 == 0 {
					continue // more replies to this option follow
				}
				if option == nbdOptGo && replyType == nbdRepAck {
					return sent, chosen, nil
				}
				if option == nbdOptAbort {
					return sent, chosen, io.EOF
				}
				break
			}
		}
	}
}

func readBounded(r io.Reader, length uint32) ([]byte, error) {
	if length > maxOptionBytes {
		return nil, fmt.Errorf("NBD option phase message of %d bytes is too large", length)
	}
	data := make([]byte, length)
	_, err := io.ReadFull(r, data)
	return data, err
}

func optionReply(option, replyType uint32, data []byte) []byte {
	out := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint64(out, nbdReplyMagic)
	binary.BigEndian.PutUint32(out[8:], option)
	binary.BigEndian.PutUint32(out[12:], replyType)
	binary.BigEndian.PutUint32(out[16:], uint32(len(data)))
	return append(out, data...)
}

// optionExportName finds the export name an option carries and returns a function that
// rebuilds the option's data with another name.
func optionExportName(option uint32, data []byte) (string, func(string) []byte, bool) {
	switch option {
	case nbdOptExportName:
		return string(data), func(n string) []byte { return []byte(n) }, true
	case nbdOptInfo, nbdOptGo, nbdOptListMetaContext, nbdOptSetMetaContext:
		// u32 name length, name, then the rest (information requests or queries).
		if len(data) < 4 {
			return "", nil, false
		}
		length := binary.BigEndian.Uint32(data)
		if uint64(length) > uint64(len(data)-4) {
			return "", nil, false
		}
		rest := data[4+length:]
		return string(data[4 : 4+length]), func(n string) []byte {
			out := make([]byte, 4, 4+len(n)+len(rest))
			binary.BigEndian.PutUint32(out, uint32(len(n)))
			out = append(out, n...)
			return append(out, rest...)
		}, true
	}
	return "", nil, false
}

// replyWithExportNames maps link names in a server reply back to export names: the export
// list (NBD_REP_SERVER) and the canonical name (NBD_INFO_NAME).
func replyWithExportNames(option, replyType uint32, data []byte) []byte {
	switch {
	case option == nbdOptList && replyType == nbdRepServer && len(data) >= 4:
		length := binary.BigEndian.Uint32(data)
		if uint64(length) > uint64(len(data)-4) {
			return data
		}
		name := exportNameOf(string(data[4 : 4+length]))
		out := make([]byte, 4, 4+len(name)+len(data))
		binary.BigEndian.PutUint32(out, uint32(len(name)))
		out = append(out, name...)
		return append(out, data[4+length:]...)
	case replyType == nbdRepInfo && len(data) >= 2 && binary.BigEndian.Uint16(data) == nbdInfoName:
		return append(append([]byte{}, data[:2]...), exportNameOf(string(data[2:]))...)
	}
	return data
}
