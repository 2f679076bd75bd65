package main

// ImportVApp and its HttpNfcLease as vCenter does them, on top of vcsim's:
//
//   - ImportVApp refuses a name a VM of the inventory already has (DuplicateName; vcsim
//     would create a second VM of that name) and disks that do not fit the datastore's free
//     space (NoDiskSpace; the free space a test sets with POST /config datastoreFreeBytes).
//   - The VM vcsim creates becomes a lab VM at once (real disk files, CBT, snapshots, the
//     control API, NBD), its disks empty until uploaded.
//   - An upload to a lease's device URL (PUT/POST /nfc/<lease>/<file>) is a streamOptimized
//     VMDK. The lab decodes it twice, with its own decoder (below, per VMware's Virtual Disk
//     Format 5.0) and with `qemu-img convert -O raw`, and installs it as the disk's contents
//     only when both give the same bytes of the disk's capacity; otherwise the upload fails
//     and the lease goes to state error. The nfcUploadCutAfterBytes fault cuts an upload after
//     that many bytes, with the same outcome.
//   - A lease in error, or aborted (HttpNfcLeaseAbort) before HttpNfcLeaseComplete, takes its
//     VM away (vCenter rolls the import back): nothing half-made stays in the inventory.

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	_ "unsafe" // go:linkname, for vcsim's lease table

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// nfcImport is one import in progress: its lease and the VM it creates.
type nfcImport struct {
	lease    types.ManagedObjectReference
	vmName   string
	vmRef    types.ManagedObjectReference
	done     bool // HttpNfcLeaseComplete
	failed   bool // the lease went to state error
	uploaded map[string]bool
}

var nfcImports = struct {
	sync.Mutex
	byLease map[string]*nfcImport
}{byLease: map[string]*nfcImport{}}

// nfcFaults: an armed cut of the next upload (0 = disarmed), and the datastore free space
// override (-1 = the real one).
var nfcFaults = struct {
	sync.Mutex
	cutAfterBytes      int64
	datastoreFreeBytes int64
}{datastoreFreeBytes: -1}

// vcsimNfcLeases is vcsim's own table of live leases (simulator.nfcLease, unexported): a
// lease lives in its session's registry, out of simulator.Map's reach, and the lab must put a
// failed one into state error where the property collector reads it.
//
//go:linkname vcsimNfcLeases github.com/vmware/govmomi/simulator.nfcLease
var vcsimNfcLeases sync.Map

var leaseReturnval = regexp.MustCompile(`<returnval[^>]*type="HttpNfcLease"[^>]*>([^<]+)</returnval>`)

// vcsimOvfNames rewrites the OVF controller subtypes vSphere writes (VirtualSCSI for
// ParaVirtual SCSI, lsilogicsas) into the names vcsim's CreateImportSpec knows (pvscsi,
// lsilogic-sas); without it vcsim drops the controller and every disk on it.
func vcsimOvfNames(body []byte) []byte {
	body = bytes.ReplaceAll(body, []byte("&gt;VirtualSCSI&lt;"), []byte("&gt;pvscsi&lt;"))
	return bytes.ReplaceAll(body, []byte("&gt;lsilogicsas&lt;"), []byte("&gt;lsilogic-sas&lt;"))
}

// serveImportVApp handles ImportVApp (called without l.mu).
func (l *lab) serveImportVApp(w http.ResponseWriter, r *http.Request, body []byte, req *types.ImportVApp) {
	spec, ok := req.Spec.(*types.VirtualMachineImportSpec)
	if !ok || !l.sessions.valid(r) {
		relay(w, l.forward(r, body))
		return
	}
	name := spec.ConfigSpec.Name
	l.mu.Lock()
	defer l.mu.Unlock()
	if existing, ok := l.vms[name]; ok {
		writeFault(w, &vimFault{fault: &types.DuplicateName{Name: name, Object: existing.ref}, message: fmt.Sprintf("The name '%s' already exists.", name)})
		return
	}
	var needBytes int64
	dsName := ""
	for _, change := range spec.ConfigSpec.DeviceChange {
		c := change.GetVirtualDeviceConfigSpec()
		if disk, ok := c.Device.(*types.VirtualDisk); ok && c.Operation == types.VirtualDeviceConfigSpecOperationAdd {
			capacity := disk.CapacityInBytes
			if capacity == 0 {
				capacity = disk.CapacityInKB * 1024
			}
			needBytes += capacity
		}
	}
	if spec.ConfigSpec.Files != nil {
		dsName, _, _ = splitDatastorePath(spec.ConfigSpec.Files.VmPathName + " x")
	}
	nfcFaults.Lock()
	free := nfcFaults.datastoreFreeBytes
	nfcFaults.Unlock()
	if free >= 0 && needBytes > free {
		writeFault(w, &vimFault{fault: &types.NoDiskSpace{FileFault: types.FileFault{File: spec.ConfigSpec.Files.VmPathName}, Datastore: dsName},
			message: fmt.Sprintf("There is not enough space on datastore %s: %d bytes needed, %d free.", dsName, needBytes, free)})
		return
	}
	rec := l.forward(r, body)
	m := leaseReturnval.FindSubmatch(rec.Body.Bytes())
	if m == nil {
		relay(w, rec)
		return
	}
	lease := types.ManagedObjectReference{Type: "HttpNfcLease", Value: string(m[1])}
	for _, entity := range simulator.Map.All("VirtualMachine") {
		sim, ok := entity.(*simulator.VirtualMachine)
		if !ok || sim.Name != name {
			continue
		}
		lv, err := l.adoptVm(sim)
		if err != nil {
			log.Printf("vcbt-lab: ImportVApp %s: %v", name, err)
			break
		}
		l.vms[name] = lv
		l.refreshInfoVms()
		nfcImports.Lock()
		nfcImports.byLease[lease.Value] = &nfcImport{lease: lease, vmName: name, vmRef: sim.Self, uploaded: map[string]bool{}}
		nfcImports.Unlock()
		break
	}
	relay(w, rec)
}

// serveLeaseEnd handles HttpNfcLeaseComplete and HttpNfcLeaseAbort (called without l.mu).
func (l *lab) serveLeaseEnd(w http.ResponseWriter, r *http.Request, body []byte, name string, lease types.ManagedObjectReference) {
	nfcImports.Lock()
	imp := nfcImports.byLease[lease.Value]
	if imp != nil && l.sessions.valid(r) {
		delete(nfcImports.byLease, lease.Value)
		imp.done = name == "HttpNfcLeaseComplete" && !imp.failed
	}
	nfcImports.Unlock()
	if imp != nil && imp.failed && name == "HttpNfcLeaseComplete" {
		writeFault(w, &vimFault{fault: &types.InvalidState{}, message: "the lease is in state error"})
		return
	}
	rec := l.forward(r, body)
	if imp != nil && !imp.done && !imp.failed {
		l.rollBackImport(imp)
	}
	relay(w, rec)
}

// failImport puts the lease in state error and removes the VM (called without l.mu).
func (l *lab) failImport(imp *nfcImport, message string) {
	nfcImports.Lock()
	already := imp.failed
	imp.failed = true
	nfcImports.Unlock()
	if already {
		return
	}
	if obj, ok := vcsimNfcLeases.Load(imp.lease); ok {
		lease := obj.(*simulator.HttpNfcLease)
		lease.State = types.HttpNfcLeaseStateError
		lease.Error = &types.LocalizedMethodFault{Fault: &types.SystemError{Reason: message}, LocalizedMessage: message}
	}
	l.rollBackImport(imp)
}

// rollBackImport destroys the import's VM and forgets it (called without l.mu).
func (l *lab) rollBackImport(imp *nfcImport) {
	if err := l.destroyVm(imp.vmRef); err != nil {
		log.Printf("vcbt-lab: rolling back the import of %s: %v", imp.vmName, err)
	}
	l.mu.Lock()
	if lv, ok := l.vms[imp.vmName]; ok && lv.ref == imp.vmRef {
		delete(l.vms, imp.vmName)
		l.refreshInfoVms()
	}
	l.mu.Unlock()
}

// destroyVm runs Destroy_Task through an in-process client (the lab's own, unlogged requests).
func (l *lab) destroyVm(ref types.ManagedObjectReference) error {
	ctx := context.Background()
	u := *l.server.URL
	sc := soap.NewClient(&u, true)
	sc.UserAgent = labUserAgent
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return err
	}
	client := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := client.Login(ctx, url.UserPassword(l.info.Username, l.info.Password)); err != nil {
		return err
	}
	defer func() { _ = client.Logout(ctx) }()
	task, err := object.NewVirtualMachine(client.Client, ref).Destroy(ctx)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

// serveNfc handles an upload to a lease's device URL.
func (l *lab) serveNfc(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 3 || (r.Method != http.MethodPut && r.Method != http.MethodPost) {
		l.vcsim.ServeHTTP(w, r)
		return
	}
	nfcImports.Lock()
	imp := nfcImports.byLease[parts[1]]
	nfcImports.Unlock()
	if imp == nil {
		l.vcsim.ServeHTTP(w, r)
		return
	}
	fileName := parts[2]
	fail := func(status int, format string, args ...interface{}) {
		message := fmt.Sprintf(format, args...)
		log.Printf("vcbt-lab: upload %s of %s failed: %s", fileName, imp.vmName, message)
		l.failImport(imp, message)
		http.Error(w, message, status)
	}
	l.mu.Lock()
	lv := l.vms[imp.vmName]
	var disk *labDisk
	if lv != nil {
		for _, d := range lv.disks {
			if d.baseName+".vmdk" == fileName {
				disk = d
			}
		}
	}
	l.mu.Unlock()
	if disk == nil {
		fail(http.StatusNotFound, "the lease has no disk %q", fileName)
		return
	}
	dir := filepath.Join(l.stateDir, "scratch")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(http.StatusInternalServerError, "%v", err)
		return
	}
	upload, err := os.CreateTemp(dir, "nfc-*.vmdk")
	if err != nil {
		fail(http.StatusInternalServerError, "%v", err)
		return
	}
	defer func() { _ = os.Remove(upload.Name()) }()
	nfcFaults.Lock()
	cut := nfcFaults.cutAfterBytes
	nfcFaults.cutAfterBytes = 0
	nfcFaults.Unlock()
	var src io.Reader = r.Body
	if cut > 0 {
		src = io.LimitReader(r.Body, cut)
	}
	n, err := io.Copy(upload, src)
	_ = upload.Close()
	if err != nil {
		fail(http.StatusInternalServerError, "upload cut after %d bytes: %v", n, err)
		return
	}
	if cut > 0 && n == cut {
		// The fault: the connection ends here, as a host that failed mid-transfer.
		message := fmt.Sprintf("injected: the upload of %s failed after %d bytes", fileName, n)
		log.Printf("vcbt-lab: %s of %s", message, imp.vmName)
		l.failImport(imp, message)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		http.Error(w, message, http.StatusInternalServerError)
		return
	}
	own := upload.Name() + ".lab.raw"
	qemu := upload.Name() + ".qemu.raw"
	defer func() { _ = os.Remove(own); _ = os.Remove(qemu) }()
	capacity, err := decodeStreamOptimized(upload.Name(), own)
	if err != nil {
		fail(http.StatusBadRequest, "%s is not a valid streamOptimized VMDK: %v", fileName, err)
		return
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "vmdk", "-O", "raw", upload.Name(), qemu).CombinedOutput(); err != nil {
		fail(http.StatusBadRequest, "qemu-img cannot read %s: %v: %s", fileName, err, strings.TrimSpace(string(out)))
		return
	}
	ownSum, err1 := sha256File(own)
	qemuSum, err2 := sha256File(qemu)
	if err1 != nil || err2 != nil {
		fail(http.StatusInternalServerError, "hashing: %v %v", err1, err2)
		return
	}
	if ownSum != qemuSum {
		fail(http.StatusBadRequest, "%s decodes differently with the lab's decoder (sha256 %s) and qemu-img (sha256 %s)", fileName, ownSum, qemuSum)
		return
	}
	l.mu.Lock()
	err = installRaw(disk, own, capacity)
	l.mu.Unlock()
	if err != nil {
		fail(http.StatusBadRequest, "%v", err)
		return
	}
	nfcImports.Lock()
	imp.uploaded[fileName] = true
	nfcImports.Unlock()
	log.Printf("vcbt-lab: nfc upload %s of %s: %d bytes, disk sha256 %s", fileName, imp.vmName, n, ownSum)
	w.WriteHeader(http.StatusOK)
}

// installRaw writes a decoded disk into a lab disk's live state, as guest writes (so the
// allocation CBT reports covers it). Called with l.mu held.
func installRaw(d *labDisk, raw string, capacityBytes int64) error {
	if capacityBytes != d.capacityBytes {
		return fmt.Errorf("the uploaded disk has %d bytes, disk %d of the VM %d", capacityBytes, d.key, d.capacityBytes)
	}
	f, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	zero := make([]byte, len(buf))
	for at := int64(0); at < capacityBytes; at += int64(len(buf)) {
		n := int64(len(buf))
		if at+n > capacityBytes {
			n = capacityBytes - at
		}
		if _, err := f.ReadAt(buf[:n], at); err != nil && !isEOF(err) {
			return err
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if err := d.write(at, buf[:n]); err != nil {
			return err
		}
	}
	return nil
}

// The lab's own streamOptimized decoder, written from VMware's Virtual Disk Format 5.0
// specification: the header (or, with GD_AT_END, the footer before the end-of-stream
// marker) gives the grain directory; each grain table entry names a grain marker whose LBA
// must be that grain's, whose deflate data must inflate to exactly one grain.
const (
	sparseMagic      = 0x564d444b
	flagCompressed   = 1 << 16
	flagMarkers      = 1 << 17
	gdAtEnd          = ^uint64(0)
	markerTypeGt     = 1
	markerTypeGd     = 2
	markerTypeFooter = 3
)

type sparseHeader struct {
	version, flags  uint32
	capacity, grain uint64
	gtes            uint32
	gdOffset        uint64
	compress        uint16
}

func readSparseHeader(b []byte) (sparseHeader, error) {
	if binary.LittleEndian.Uint32(b[0:]) != sparseMagic {
		return sparseHeader{}, fmt.Errorf("no KDMV magic")
	}
	h := sparseHeader{
		version:  binary.LittleEndian.Uint32(b[4:]),
		flags:    binary.LittleEndian.Uint32(b[8:]),
		capacity: binary.LittleEndian.Uint64(b[12:]),
		grain:    binary.LittleEndian.Uint64(b[20:]),
		gtes:     binary.LittleEndian.Uint32(b[44:]),
		gdOffset: binary.LittleEndian.Uint64(b[56:]),
		compress: binary.LittleEndian.Uint16(b[77:]),
	}
	if h.version != 3 || h.flags&flagCompressed == 0 || h.flags&flagMarkers == 0 || h.compress != 1 {
		return h, fmt.Errorf("not a streamOptimized header (version %d, flags %#x, compression %d)", h.version, h.flags, h.compress)
	}
	if h.grain == 0 || h.grain&(h.grain-1) != 0 || h.gtes == 0 || h.capacity == 0 {
		return h, fmt.Errorf("bad grain size %d, table entries %d or capacity %d", h.grain, h.gtes, h.capacity)
	}
	return h, nil
}

func readAtExactly(f *os.File, size int64, buf []byte, at int64) error {
	if at < 0 || at+int64(len(buf)) > size {
		return fmt.Errorf("reference to bytes [%d, %d) outside the %d-byte file", at, at+int64(len(buf)), size)
	}
	_, err := f.ReadAt(buf, at)
	return err
}

func metadataMarkerType(f *os.File, size int64, sector uint64) (uint32, error) {
	if sector == 0 {
		return 0, fmt.Errorf("metadata at sector 0")
	}
	m := make([]byte, 512)
	if err := readAtExactly(f, size, m, int64(sector-1)*512); err != nil {
		return 0, err
	}
	if binary.LittleEndian.Uint32(m[8:]) != 0 {
		return 0, fmt.Errorf("the sector before %d is not a metadata marker", sector)
	}
	return binary.LittleEndian.Uint32(m[12:]), nil
}

// decodeStreamOptimized writes the disk of a streamOptimized VMDK as a raw file; returns its capacity in bytes.
func decodeStreamOptimized(in, out string) (int64, error) {
	f, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size < 1536 || size%512 != 0 {
		return 0, fmt.Errorf("%d bytes is not a whole stream", size)
	}
	b := make([]byte, 512)
	if err := readAtExactly(f, size, b, 0); err != nil {
		return 0, err
	}
	h, err := readSparseHeader(b)
	if err != nil {
		return 0, err
	}
	if h.gdOffset == gdAtEnd {
		eos := make([]byte, 512)
		if err := readAtExactly(f, size, eos, size-512); err != nil {
			return 0, err
		}
		if !bytes.Equal(eos, make([]byte, 512)) {
			return 0, fmt.Errorf("the stream does not end with an end-of-stream marker")
		}
		if t, err := metadataMarkerType(f, size, uint64(size/512-2)); err != nil || t != markerTypeFooter {
			return 0, fmt.Errorf("no footer marker before the footer (%v)", err)
		}
		if err := readAtExactly(f, size, b, size-1024); err != nil {
			return 0, err
		}
		footer, err := readSparseHeader(b)
		if err != nil {
			return 0, fmt.Errorf("footer: %v", err)
		}
		if footer.capacity != h.capacity || footer.grain != h.grain || footer.gtes != h.gtes {
			return 0, fmt.Errorf("the footer disagrees with the header")
		}
		h.gdOffset = footer.gdOffset
	}
	if t, err := metadataMarkerType(f, size, h.gdOffset); err != nil || t != markerTypeGd {
		return 0, fmt.Errorf("no grain directory marker before sector %d (%v)", h.gdOffset, err)
	}
	grains := (h.capacity + h.grain - 1) / h.grain
	tables := (grains + uint64(h.gtes) - 1) / uint64(h.gtes)
	gd := make([]byte, tables*4)
	if err := readAtExactly(f, size, gd, int64(h.gdOffset)*512); err != nil {
		return 0, err
	}
	o, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer o.Close()
	grainBytes := int64(h.grain) * 512
	gt := make([]byte, h.gtes*4)
	marker := make([]byte, 12)
	for t := uint64(0); t < tables; t++ {
		gtSector := uint64(binary.LittleEndian.Uint32(gd[t*4:]))
		if gtSector == 0 {
			continue
		}
		if mt, err := metadataMarkerType(f, size, gtSector); err != nil || mt != markerTypeGt {
			return 0, fmt.Errorf("no grain table marker before sector %d (%v)", gtSector, err)
		}
		if err := readAtExactly(f, size, gt, int64(gtSector)*512); err != nil {
			return 0, err
		}
		for e := uint64(0); e < uint64(h.gtes); e++ {
			grain := t*uint64(h.gtes) + e
			sector := uint64(binary.LittleEndian.Uint32(gt[e*4:]))
			if sector == 0 {
				continue
			}
			if grain >= grains {
				return 0, fmt.Errorf("grain table entry for grain %d past the capacity", grain)
			}
			if err := readAtExactly(f, size, marker, int64(sector)*512); err != nil {
				return 0, err
			}
			lba := binary.LittleEndian.Uint64(marker[0:])
			length := binary.LittleEndian.Uint32(marker[8:])
			if lba != grain*h.grain {
				return 0, fmt.Errorf("grain marker at sector %d says LBA %d, the table puts it at %d", sector, lba, grain*h.grain)
			}
			if length == 0 || int64(length) > grainBytes*2 {
				return 0, fmt.Errorf("grain marker at sector %d has size %d", sector, length)
			}
			compressed := make([]byte, length)
			if err := readAtExactly(f, size, compressed, int64(sector)*512+12); err != nil {
				return 0, err
			}
			zr, err := zlib.NewReader(bytes.NewReader(compressed))
			if err != nil {
				return 0, fmt.Errorf("grain %d: %v", grain, err)
			}
			data, err := io.ReadAll(io.LimitReader(zr, grainBytes+1))
			_ = zr.Close()
			if err != nil {
				return 0, fmt.Errorf("grain %d: %v", grain, err)
			}
			if int64(len(data)) != grainBytes {
				return 0, fmt.Errorf("grain %d inflates to %d bytes, not %d", grain, len(data), grainBytes)
			}
			at := int64(grain) * grainBytes
			end := int64(h.capacity) * 512
			if at+grainBytes > end {
				data = data[:end-at]
			}
			if _, err := o.WriteAt(data, at); err != nil {
				return 0, err
			}
		}
	}
	capacity := int64(h.capacity) * 512
	if err := o.Truncate(capacity); err != nil {
		return 0, err
	}
	return capacity, o.Close()
}

// setDatastoreFreeBytes overrides every datastore's free space (-1: leave vcsim's). Called from POST /config.
func setDatastoreFreeBytes(n int64) {
	nfcFaults.Lock()
	nfcFaults.datastoreFreeBytes = n
	nfcFaults.Unlock()
	if n < 0 {
		return
	}
	for _, obj := range simulator.Map.All("Datastore") {
		ds := obj.(*simulator.Datastore)
		simulator.Map.WithLock(ds, func() {
			ds.Summary.FreeSpace = n
			ds.Info.GetDatastoreInfo().FreeSpace = n
		})
	}
}

// armNfcCut arms (n > 0) or disarms the cut of the next upload. Called from POST /faults.
func armNfcCut(n int64) {
	nfcFaults.Lock()
	nfcFaults.cutAfterBytes = n
	nfcFaults.Unlock()
}

func armedNfcCut() int64 {
	nfcFaults.Lock()
	defer nfcFaults.Unlock()
	return nfcFaults.cutAfterBytes
}
