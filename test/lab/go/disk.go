package main

// The disk model: states (full sparse raw files), their descriptors, guest writes, and the
// per-unit change tracking that CBT replies are computed from.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// trackUnitBytes is the granularity at which the lab remembers writes. Replies round out to
// cbtBlockBytes (a multiple of it), so the configurable block size can change at any time.
const trackUnitBytes = 4096

type diskState struct {
	// name is the descriptor's base name without ".vmdk": "disk1" for the base disk,
	// "disk1-000001" for a delta.
	name          string
	capacityBytes int64
	// unitSeq[u] is the sequence of the last write to unit u in epoch seqEpoch (0 = none).
	unitSeq  []uint64
	seqEpoch string
	// allocated[u] is true once unit u was ever written (tracked whether or not CBT is on).
	allocated []bool
	// changeId is the ChangeId frozen on a snapshot's backing ("" when CBT was inactive);
	// unused for the live state, whose ChangeId is computed.
	changeId string
	// delta is the VMware delta extent of a state above the base (nil for the base).
	delta *deltaFile
}

// resizeMark remembers a growth, for the KB 2090639 defect (see cbt.go).
type resizeMark struct {
	epoch         string
	lastSeqBefore uint64
	oldCapacity   int64
}

type labDisk struct {
	key           int32
	label         string
	datastore     types.ManagedObjectReference
	datastoreName string
	dir           string // folder inside the datastore, e.g. "DC0_H0_VM0"
	baseName      string // "disk1"
	capacityBytes int64
	// CBT: epoch is "" while tracking is inactive; current is the sequence guest writes get.
	epoch       string
	current     uint64
	resizes     []resizeMark
	nextDeltaNo int
	// deltaFormat is what the next snapshot's delta is written as (vmfsSparse or seSparse).
	deltaFormat string
	// chain[0] is the base disk, chain[i] (i>0) the state created by the i-th snapshot,
	// chain[len-1] the live state. Snapshot i (0-based, oldest first) froze chain[i].
	chain []*diskState
}

func (d *labDisk) live() *diskState { return d.chain[len(d.chain)-1] }

func (d *labDisk) units(capacityBytes int64) int {
	return int((capacityBytes + trackUnitBytes - 1) / trackUnitBytes)
}

func (d *labDisk) localDir() string { return filepath.Join(datastoreDir(d.datastore), d.dir) }

func (d *labDisk) isBase(s *diskState) bool { return s == d.chain[0] }

func (d *labDisk) extentName(s *diskState) string {
	if d.isBase(s) {
		return s.name + "-flat.vmdk"
	}
	if s.delta != nil && s.delta.format == deltaSeSparse {
		return s.name + "-sesparse.vmdk"
	}
	return s.name + "-delta.vmdk"
}

// extentPath is the local file of the state's extent: the flat base, or its delta.
func (d *labDisk) extentPath(s *diskState) string {
	return filepath.Join(d.localDir(), d.extentName(s))
}

// rawPath is the lab's full raw image of the state (the truth behind sha256, content and
// NBD exports): the flat file for the base, a private sparse copy for a delta state.
func (d *labDisk) rawPath(s *diskState) string {
	if d.isBase(s) {
		return d.extentPath(s)
	}
	return filepath.Join(d.localDir(), s.name+".lab-raw")
}

func isEOF(err error) bool { return err == io.EOF }

func (d *labDisk) descriptorPath(s *diskState) string {
	return filepath.Join(d.localDir(), s.name+".vmdk")
}

// datastorePath is the descriptor's name as vSphere spells it: "[LocalDS_0] VM/disk1.vmdk".
func (d *labDisk) datastorePath(s *diskState) string {
	return fmt.Sprintf("[%s] %s", d.datastoreName, path.Join(d.dir, s.name+".vmdk"))
}

func (d *labDisk) indexOf(s *diskState) int {
	for i, c := range d.chain {
		if c == s {
			return i
		}
	}
	return -1
}

// writeDescriptor writes the VMware text descriptor of a state. The base is a monolithic
// flat VMFS disk; a delta names its parent and its vmfsSparse or seSparse extent. CIDs
// follow the chain: each delta's parentCID is its parent's CID.
func (d *labDisk) writeDescriptor(s *diskState) error {
	sectors := s.capacityBytes / 512
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\n")
	i := d.indexOf(s)
	fmt.Fprintf(&b, "CID=%08x\n", 0xfffffffe-uint32(i))
	if i == 0 {
		b.WriteString("parentCID=ffffffff\ncreateType=\"vmfs\"\n\n# Extent description\n")
		fmt.Fprintf(&b, "RW %d VMFS \"%s\"\n", sectors, d.extentName(s))
	} else {
		parent := d.chain[i-1]
		createType, extentType := deltaVmfsSparse, "VMFSSPARSE"
		if s.delta != nil && s.delta.format == deltaSeSparse {
			createType, extentType = deltaSeSparse, "SESPARSE"
		}
		fmt.Fprintf(&b, "parentCID=%08x\ncreateType=\"%s\"\nparentFileNameHint=\"%s.vmdk\"\n\n# Extent description\n", 0xfffffffe-uint32(i-1), createType, parent.name)
		fmt.Fprintf(&b, "RW %d %s \"%s\"\n", sectors, extentType, d.extentName(s))
	}
	b.WriteString("\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"pvscsi\"\nddb.virtualHWVersion = \"13\"\n")
	if d.epoch != "" {
		b.WriteString("changeTrackPath=\"" + s.name + "-ctk.vmdk\"\n")
	}
	return os.WriteFile(d.descriptorPath(s), []byte(b.String()), 0o600)
}

func (d *labDisk) writeAllDescriptors() error {
	for _, s := range d.chain {
		if err := d.writeDescriptor(s); err != nil {
			return err
		}
	}
	return nil
}

// newLabDisk gives a vcsim disk real files: an empty sparse base extent of its capacity.
func newLabDisk(vmDir string, disk *types.VirtualDisk) (*labDisk, error) {
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, fmt.Errorf("disk %d: unsupported backing %T", disk.Key, disk.Backing)
	}
	dsName, rel, err := splitDatastorePath(backing.FileName)
	if err != nil {
		return nil, fmt.Errorf("disk %d: %w", disk.Key, err)
	}
	dsRef, ok := datastoreByName(dsName)
	if !ok {
		return nil, fmt.Errorf("disk %d: datastore %q not found", disk.Key, dsName)
	}
	capacity := disk.CapacityInBytes
	if capacity == 0 {
		capacity = disk.CapacityInKB * 1024
	}
	d := &labDisk{
		key:           disk.Key,
		label:         disk.DeviceInfo.GetDescription().Label,
		datastore:     dsRef,
		datastoreName: dsName,
		dir:           path.Dir(rel),
		baseName:      strings.TrimSuffix(path.Base(rel), ".vmdk"),
		capacityBytes: capacity,
		nextDeltaNo:   1,
		deltaFormat:   deltaVmfsSparse,
	}
	base := &diskState{name: d.baseName, capacityBytes: capacity, unitSeq: make([]uint64, d.units(capacity)), allocated: make([]bool, d.units(capacity))}
	d.chain = []*diskState{base}
	if err := os.MkdirAll(d.localDir(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.Create(d.extentPath(base))
	if err != nil {
		return nil, err
	}
	err = f.Truncate(capacity)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	return d, d.writeDescriptor(base)
}

// write applies a guest write to the live state.
func (d *labDisk) write(offsetBytes int64, data []byte) error {
	s := d.live()
	if offsetBytes < 0 || offsetBytes+int64(len(data)) > s.capacityBytes {
		return fmt.Errorf("write [%d, %d) is outside the disk (capacity %d bytes)", offsetBytes, offsetBytes+int64(len(data)), s.capacityBytes)
	}
	if len(data) == 0 {
		return nil
	}
	f, err := os.OpenFile(d.rawPath(s), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, offsetBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if s.delta != nil {
		if err := s.delta.update(d.rawPath(s), offsetBytes, int64(len(data)), 0); err != nil {
			return err
		}
	}
	d.track(s, offsetBytes, int64(len(data)))
	return nil
}

// unmap is a guest's UNMAP/TRIM of [offsetBytes, +lengthBytes): the range reads as zeros;
// an seSparse delta marks the whole grains it covers unmapped, other deltas store zeros.
func (d *labDisk) unmap(offsetBytes, lengthBytes int64) error {
	s := d.live()
	if offsetBytes < 0 || lengthBytes < 0 || offsetBytes+lengthBytes > s.capacityBytes {
		return fmt.Errorf("unmap [%d, %d) is outside the disk (capacity %d bytes)", offsetBytes, offsetBytes+lengthBytes, s.capacityBytes)
	}
	if lengthBytes == 0 {
		return nil
	}
	f, err := os.OpenFile(d.rawPath(s), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, lengthBytes), offsetBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if s.delta != nil {
		if err := s.delta.update(d.rawPath(s), offsetBytes, lengthBytes, seUnmapped); err != nil {
			return err
		}
	}
	d.track(s, offsetBytes, lengthBytes)
	return nil
}

// track records a change of [offsetBytes, +lengthBytes) for CBT and allocation.
func (d *labDisk) track(s *diskState, offsetBytes, lengthBytes int64) {
	first := offsetBytes / trackUnitBytes
	last := (offsetBytes + lengthBytes - 1) / trackUnitBytes
	for u := first; u <= last; u++ {
		s.allocated[u] = true
		if d.epoch != "" {
			s.unitSeq[u] = d.current
		}
	}
}

// freeze is the disk part of creating a snapshot: the live state stays where it is, now
// frozen, and a new live delta state starts as a sparse copy of it.
func (d *labDisk) freeze() (*diskState, error) {
	frozen := d.live()
	if d.epoch != "" {
		frozen.changeId = fmt.Sprintf("%s/%d", d.epoch, d.current)
		d.current++
	} else {
		frozen.changeId = ""
	}
	next := &diskState{
		name:          fmt.Sprintf("%s-%06d", d.baseName, d.nextDeltaNo),
		capacityBytes: frozen.capacityBytes,
		unitSeq:       append([]uint64(nil), frozen.unitSeq...),
		seqEpoch:      frozen.seqEpoch,
		allocated:     append([]bool(nil), frozen.allocated...),
	}
	d.nextDeltaNo++
	d.chain = append(d.chain, next)
	if err := copySparse(d.rawPath(frozen), d.rawPath(next), frozen.allocated, frozen.capacityBytes); err != nil {
		return nil, err
	}
	next.delta = &deltaFile{format: d.deltaFormat}
	delta, err := newDeltaFile(d.extentPath(next), d.deltaFormat, next.capacityBytes)
	if err != nil {
		return nil, err
	}
	next.delta = delta
	return frozen, d.writeAllDescriptors()
}

// consolidate is the disk part of removing the snapshot that froze chain[i]: the child
// state (which already holds every byte, being a full copy plus later writes) takes over
// the frozen state's file names, and the frozen state's files are deleted.
func (d *labDisk) consolidate(i int) error {
	parent, child := d.chain[i], d.chain[i+1]
	parentRaw, childRaw, childDescriptor := d.rawPath(parent), d.rawPath(child), d.descriptorPath(child)
	if err := os.Remove(parentRaw); err != nil {
		return err
	}
	if err := os.Rename(childRaw, parentRaw); err != nil {
		return err
	}
	// The child's grains go into the parent's extent: the flat base already is the renamed
	// raw image; a parent delta takes them over (the child's data, read from that image).
	if parent.delta != nil {
		if err := parent.delta.mergeFrom(child.delta, parentRaw); err != nil {
			return err
		}
	}
	_ = os.Remove(d.extentPath(child))
	_ = os.Remove(childDescriptor)
	child.delta = parent.delta
	child.name = parent.name
	d.chain = append(d.chain[:i], d.chain[i+1:]...)
	return d.writeAllDescriptors()
}

// resize grows the live state (only possible without snapshots, as on ESXi).
func (d *labDisk) resize(capacityBytes int64) error {
	s := d.live()
	if len(d.chain) != 1 {
		return fmt.Errorf("disk %d has snapshots; ESXi refuses to extend a disk with snapshots", d.key)
	}
	if capacityBytes < s.capacityBytes {
		return fmt.Errorf("disk %d cannot shrink from %d to %d bytes", d.key, s.capacityBytes, capacityBytes)
	}
	if capacityBytes%1024 != 0 {
		return fmt.Errorf("capacity %d bytes is not a multiple of 1024", capacityBytes)
	}
	if capacityBytes == s.capacityBytes {
		return nil
	}
	if err := os.Truncate(d.extentPath(s), capacityBytes); err != nil {
		return err
	}
	if d.epoch != "" {
		d.resizes = append(d.resizes, resizeMark{epoch: d.epoch, lastSeqBefore: d.current, oldCapacity: s.capacityBytes})
		d.current++
	}
	n := d.units(capacityBytes)
	s.unitSeq = append(s.unitSeq, make([]uint64, n-len(s.unitSeq))...)
	s.allocated = append(s.allocated, make([]bool, n-len(s.allocated))...)
	s.capacityBytes = capacityBytes
	d.capacityBytes = capacityBytes
	return d.writeDescriptor(s)
}

// startEpoch activates CBT on the disk (a new epoch; earlier ChangeIds become void).
func (d *labDisk) startEpoch() {
	d.epoch = newEpochId()
	d.current = 1
	d.resizes = nil
	s := d.live()
	for u := range s.unitSeq {
		s.unitSeq[u] = 0
	}
	s.seqEpoch = d.epoch
}

func (d *labDisk) stopEpoch() { d.epoch = "" }

// liveChangeId is what the live backing shows. Guest writes in the current interval carry
// the sequence `current`, so the live ChangeId names the one before: a query with it
// reports every write since the last snapshot (possibly a few made before the ChangeId was
// read - more, never less, as CBT promises).
func (d *labDisk) liveChangeId() string {
	if d.epoch == "" {
		return ""
	}
	return fmt.Sprintf("%s/%d", d.epoch, d.current-1)
}

// newEpochId formats 16 random bytes the way ESXi prints ChangeId epochs:
// "52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e".
func newEpochId() string {
	raw := randomHex(16)
	var parts []string
	for i := 0; i < 32; i += 2 {
		parts = append(parts, raw[i:i+2])
	}
	return strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
}

// copySparse copies only the allocated units, so the copy stays as sparse as the source.
func copySparse(from, to string, allocated []bool, capacityBytes int64) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if err := dst.Truncate(capacityBytes); err != nil {
		_ = dst.Close()
		return err
	}
	buf := make([]byte, 1<<20)
	for u := 0; u < len(allocated); {
		if !allocated[u] {
			u++
			continue
		}
		end := u
		for end < len(allocated) && allocated[end] && int64(end-u)*trackUnitBytes < int64(len(buf)) {
			end++
		}
		start := int64(u) * trackUnitBytes
		stop := int64(end) * trackUnitBytes
		if stop > capacityBytes {
			stop = capacityBytes
		}
		n, err := src.ReadAt(buf[:stop-start], start)
		if err != nil && err != io.EOF {
			_ = dst.Close()
			return err
		}
		if _, err := dst.WriteAt(buf[:n], start); err != nil {
			_ = dst.Close()
			return err
		}
		u = end
	}
	return dst.Close()
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sortedVmNames(m map[string]*labVm) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
