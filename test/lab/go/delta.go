package main

// VMware delta extents as ESXi writes them for snapshots, encoded from the formats (see
// docs/vmdk.md): vmfsSparse (COWD: 2048-byte header, grain directory at sector 4, grain
// tables of 4096 uint32 sector offsets appended on first use, 512-byte grains appended in
// write order) and seSparse (constant and volatile headers, grain directory, a preallocated
// grain tables area, 4 KiB grains numbered in allocation order, zero and unmapped grain
// entries). A delta holds whole grains: a guest write to part of a grain copies the rest
// from the disk as it was (the lab's raw copy already holds it), as ESXi's copy-on-write does.
// The lab's raw copy of each state stays the truth; the delta is what /folder serves.

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

const (
	deltaVmfsSparse = "vmfsSparse"
	deltaSeSparse   = "seSparse"
	sectorBytes     = 512
)

// seSparse grain table entry types (top nibble).
const (
	seUnmapped  = 1
	seZero      = 2
	seAllocated = 3
)

type deltaFile struct {
	path          string
	format        string
	capacityBytes int64
	grainBytes    int64
	// tables: grain table index -> file offset of the table.
	tables map[int64]int64
	// grains: grain index -> file offset of its data.
	grains map[int64]int64
	// marks: seSparse grain index -> seZero or seUnmapped.
	marks map[int64]uint64
	// vmfsSparse: the next free byte (tables and grains are appended).
	nextOffset int64
	// seSparse layout (bytes) and counters.
	gdOffset, tablesOffset, grainsOffset int64
	nextTable, nextGrain                 int64
}

const entriesPerTable = 4096

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// newDeltaFile creates an empty delta extent (every grain unallocated).
func newDeltaFile(path, format string, capacityBytes int64) (*deltaFile, error) {
	d := &deltaFile{path: path, format: format, capacityBytes: capacityBytes, tables: map[int64]int64{}, grains: map[int64]int64{}, marks: map[int64]uint64{}}
	sectors := capacityBytes / sectorBytes
	var header []byte
	var size int64
	switch format {
	case deltaVmfsSparse:
		d.grainBytes = sectorBytes
		gdEntries := ceilDiv(sectors, entriesPerTable)
		d.gdOffset = 4 * sectorBytes
		d.nextOffset = d.gdOffset + ceilDiv(gdEntries*4, sectorBytes)*sectorBytes
		header = make([]byte, 2048)
		copy(header, "COWD")
		binary.LittleEndian.PutUint32(header[4:], 1)
		binary.LittleEndian.PutUint32(header[8:], 3)
		binary.LittleEndian.PutUint32(header[12:], uint32(sectors))
		binary.LittleEndian.PutUint32(header[16:], 1)
		binary.LittleEndian.PutUint32(header[20:], 4)
		binary.LittleEndian.PutUint32(header[24:], uint32(gdEntries))
		binary.LittleEndian.PutUint32(header[28:], uint32(d.nextOffset/sectorBytes))
		size = d.nextOffset
	case deltaSeSparse:
		d.grainBytes = 8 * sectorBytes
		tableCount := ceilDiv(capacityBytes, d.grainBytes*entriesPerTable)
		gdSectors := ceilDiv(tableCount*8, sectorBytes)
		gdSector := int64(8)
		tablesSector := gdSector + gdSectors
		tablesSectors := tableCount * 64
		bitmapSector := tablesSector + tablesSectors
		backmapSector := bitmapSector + 1
		grainsSector := backmapSector + 1
		grainsSectors := ceilDiv(capacityBytes, d.grainBytes) * 8
		d.gdOffset, d.tablesOffset, d.grainsOffset = gdSector*sectorBytes, tablesSector*sectorBytes, grainsSector*sectorBytes
		words := []uint64{0xcafebabe, 0x200000001, uint64(sectors), 8, 64, 0, 0, 0, 0, 0,
			1, 1, 2, 1, 3, 5,
			uint64(gdSector), uint64(gdSectors), uint64(tablesSector), uint64(tablesSectors),
			uint64(bitmapSector), 1, uint64(backmapSector), 1, uint64(grainsSector), uint64(grainsSectors)}
		header = make([]byte, 2*sectorBytes)
		for i, w := range words {
			binary.LittleEndian.PutUint64(header[i*8:], w)
		}
		binary.LittleEndian.PutUint64(header[sectorBytes:], 0xcafecafe)
		size = d.grainsOffset
	default:
		return nil, fmt.Errorf("unknown delta format %q", format)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	_, err = f.WriteAt(header, 0)
	return d, err
}

// grainsOf lists the grain indexes the delta holds (data or marks), ascending.
func (d *deltaFile) grainsOf() []int64 {
	var out []int64
	for g := range d.grains {
		out = append(out, g)
	}
	for g := range d.marks {
		if _, ok := d.grains[g]; !ok {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func putU32(f *os.File, v uint32, at int64) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	_, err := f.WriteAt(b[:], at)
	return err
}

func putU64(f *os.File, v uint64, at int64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	_, err := f.WriteAt(b[:], at)
	return err
}

// table returns the file offset of grain table t, allocating it on first use.
func (d *deltaFile) table(f *os.File, t int64) (int64, error) {
	if at, ok := d.tables[t]; ok {
		return at, nil
	}
	var at int64
	if d.format == deltaVmfsSparse {
		at = d.nextOffset
		if _, err := f.WriteAt(make([]byte, entriesPerTable*4), at); err != nil {
			return 0, err
		}
		d.nextOffset += entriesPerTable * 4
		if err := putU32(f, uint32(at/sectorBytes), d.gdOffset+t*4); err != nil {
			return 0, err
		}
		if err := putU32(f, uint32(d.nextOffset/sectorBytes), 28); err != nil {
			return 0, err
		}
	} else {
		n := d.nextTable
		d.nextTable++
		at = d.tablesOffset + n*entriesPerTable*8
		if err := putU64(f, 0x1000000000000000|uint64(n), d.gdOffset+t*8); err != nil {
			return 0, err
		}
		if err := putU64(f, uint64(d.nextTable), sectorBytes+8); err != nil {
			return 0, err
		}
	}
	d.tables[t] = at
	return at, nil
}

// putGrain stores a whole grain's bytes (len == grainBytes), allocating it on first use.
func (d *deltaFile) putGrain(f *os.File, g int64, data []byte) error {
	if at, ok := d.grains[g]; ok {
		_, err := f.WriteAt(data, at)
		return err
	}
	tableAt, err := d.table(f, g/entriesPerTable)
	if err != nil {
		return err
	}
	var at int64
	if d.format == deltaVmfsSparse {
		at = d.nextOffset
		d.nextOffset += d.grainBytes
		if _, err := f.WriteAt(data, at); err != nil {
			return err
		}
		if err := putU32(f, uint32(at/sectorBytes), tableAt+(g%entriesPerTable)*4); err != nil {
			return err
		}
		if err := putU32(f, uint32(d.nextOffset/sectorBytes), 28); err != nil {
			return err
		}
	} else {
		n := uint64(d.nextGrain)
		d.nextGrain++
		at = d.grainsOffset + int64(n)*d.grainBytes
		if _, err := f.WriteAt(data, at); err != nil {
			return err
		}
		entry := uint64(seAllocated)<<60 | (n&0xfff)<<48 | n>>12
		if err := putU64(f, entry, tableAt+(g%entriesPerTable)*8); err != nil {
			return err
		}
	}
	d.grains[g] = at
	delete(d.marks, g)
	return nil
}

// markGrain makes a whole seSparse grain zero or unmapped (its old data grain, if any, is
// left unreferenced, as ESXi leaves it for space reclamation).
func (d *deltaFile) markGrain(f *os.File, g int64, kind uint64) error {
	tableAt, err := d.table(f, g/entriesPerTable)
	if err != nil {
		return err
	}
	if err := putU64(f, kind<<60, tableAt+(g%entriesPerTable)*8); err != nil {
		return err
	}
	delete(d.grains, g)
	d.marks[g] = kind
	return nil
}

// update copies grains [first, last] from the raw image of the state into the delta; with
// unmapKind set (seSparse only) grains wholly inside [wholeFrom, wholeTo) are marked instead.
func (d *deltaFile) update(raw string, offsetBytes, lengthBytes int64, unmapKind uint64) error {
	if lengthBytes <= 0 {
		return nil
	}
	first := offsetBytes / d.grainBytes
	last := (offsetBytes + lengthBytes - 1) / d.grainBytes
	src, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, (last-first+1)*d.grainBytes)
	if _, err := src.ReadAt(buf, first*d.grainBytes); err != nil && !isEOF(err) {
		_ = f.Close()
		return err
	}
	for g := first; g <= last; g++ {
		start, end := g*d.grainBytes, (g+1)*d.grainBytes
		whole := start >= offsetBytes && end <= offsetBytes+lengthBytes
		if unmapKind != 0 && whole && d.format == deltaSeSparse {
			err = d.markGrain(f, g, unmapKind)
		} else {
			err = d.putGrain(f, g, buf[(g-first)*d.grainBytes:(g-first+1)*d.grainBytes])
		}
		if err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

// mergeFrom takes a child delta's grains into this one (consolidation): data is read from
// the raw image that now holds the child's content; marks stay marks where this format
// has them.
func (d *deltaFile) mergeFrom(child *deltaFile, raw string) error {
	for _, g := range child.grainsOf() {
		kind := uint64(0)
		if _, isData := child.grains[g]; !isData {
			kind = child.marks[g]
		}
		if err := d.update(raw, g*child.grainBytes, child.grainBytes, kind); err != nil {
			return err
		}
	}
	return nil
}
