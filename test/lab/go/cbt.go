package main

// QueryChangedDiskAreas as ESXi answers it (docs/vsphere-cbt.md), including its faults,
// paging and the disk-extension defect of KB 2090639.

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/vmware/govmomi/vim25/types"
)

// vimFault is a vSphere fault plus the faultstring to send with it.
type vimFault struct {
	fault   types.BaseMethodFault
	message string
}

var changeIdPattern = regexp.MustCompile(`^([0-9a-f]{2}( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7})/([0-9]+)$`)

func fileFault(file, message string) *vimFault {
	return &vimFault{fault: &types.FileFault{File: file}, message: message}
}

func invalidArgument(property, message string) *vimFault {
	return &vimFault{fault: &types.InvalidArgument{InvalidProperty: property}, message: message}
}

// queryChangedDiskAreas answers one call. Called with l.mu held.
func (l *lab) queryChangedDiskAreas(lv *labVm, req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, *vimFault) {
	d := lv.disk(req.DeviceKey)
	if d == nil {
		return nil, invalidArgument("deviceKey", fmt.Sprintf("VM %s has no virtual disk with device key %d", lv.name, req.DeviceKey))
	}
	var state *diskState
	if req.Snapshot == nil {
		if lv.poweredOn() {
			return nil, &vimFault{
				fault:   &types.InvalidState{},
				message: fmt.Sprintf("VM %s is powered on: QueryChangedDiskAreas needs a snapshot", lv.name),
			}
		}
		state = d.live()
	} else {
		i := lv.snapshotIndex(*req.Snapshot)
		if i < 0 {
			return nil, invalidArgument("snapshot", fmt.Sprintf("%s is not a snapshot of VM %s", req.Snapshot.Value, lv.name))
		}
		state = d.chain[i]
	}
	file := d.datastorePath(state)
	if d.epoch == "" {
		return nil, fileFault(file, fmt.Sprintf("Change tracking is not active on disk %d (%s) of VM %s", d.key, file, lv.name))
	}
	if req.StartOffset < 0 || req.StartOffset >= state.capacityBytes {
		return nil, invalidArgument("startOffset", fmt.Sprintf("startOffset %d is outside disk %d (capacity %d bytes)", req.StartOffset, d.key, state.capacityBytes))
	}

	if req.ChangeId == "*" {
		return l.areas(state, req.StartOffset, func(u int) bool { return state.allocated[u] }), nil
	}
	m := changeIdPattern.FindStringSubmatch(req.ChangeId)
	if m == nil {
		return nil, invalidArgument("changeId", fmt.Sprintf("malformed ChangeId %q", req.ChangeId))
	}
	epoch := m[1]
	since, err := strconv.ParseUint(m[4], 10, 64)
	if err != nil || epoch != d.epoch || since > d.current {
		return nil, fileFault(file, fmt.Sprintf("Error: ChangeId %q is unknown or no longer valid for disk %d (%s)", req.ChangeId, d.key, file))
	}
	if state.seqEpoch != d.epoch {
		return nil, fileFault(file, fmt.Sprintf("Snapshot disk %s was not tracked in the current CBT epoch", file))
	}
	// KB 2090639: a ChangeId from before the disk grew yields incomplete areas: only the
	// changes within the old capacity made before the growth. Clients must compare
	// capacities and not trust an incremental across a resize.
	limitSeq, limitBytes := ^uint64(0), state.capacityBytes
	for _, r := range d.resizes {
		if r.epoch == epoch && since <= r.lastSeqBefore {
			if r.lastSeqBefore < limitSeq {
				limitSeq = r.lastSeqBefore
			}
			if r.oldCapacity < limitBytes {
				limitBytes = r.oldCapacity
			}
		}
	}
	return l.areas(state, req.StartOffset, func(u int) bool {
		seq := state.unitSeq[u]
		return seq > since && seq <= limitSeq && int64(u)*trackUnitBytes < limitBytes
	}), nil
}

// areas builds one reply from startOffset: blocks of cbtBlockBytes containing a selected
// unit, adjacent blocks merged, clipped to the disk; at most maxAreasPerReply areas and
// maxBytesPerReply bytes of the disk. The reply's length always moves the caller forward.
func (l *lab) areas(s *diskState, startOffset int64, selected func(unit int) bool) *types.DiskChangeInfo {
	block := l.config.CbtBlockBytes
	end := s.capacityBytes
	if l.config.MaxBytesPerReply > 0 && startOffset+l.config.MaxBytesPerReply < end {
		end = startOffset + l.config.MaxBytesPerReply
	}
	unitsPerBlock := int(block / trackUnitBytes)
	var out []types.DiskChangeExtent
	for b := startOffset / block; b*block < end; b++ {
		changed := false
		for u := int(b) * unitsPerBlock; u < (int(b)+1)*unitsPerBlock && u < len(s.unitSeq); u++ {
			if selected(u) {
				changed = true
				break
			}
		}
		if !changed {
			continue
		}
		areaStart, areaEnd := b*block, (b+1)*block
		if areaStart < startOffset {
			areaStart = startOffset
		}
		if areaEnd > end {
			areaEnd = end
		}
		if n := len(out); n > 0 && out[n-1].Start+out[n-1].Length == areaStart {
			out[n-1].Length = areaEnd - out[n-1].Start
			continue
		}
		if l.config.MaxAreasPerReply > 0 && len(out) == l.config.MaxAreasPerReply {
			// The reply stops where the last reported area ends.
			end = out[len(out)-1].Start + out[len(out)-1].Length
			break
		}
		out = append(out, types.DiskChangeExtent{Start: areaStart, Length: areaEnd - areaStart})
	}
	return &types.DiskChangeInfo{StartOffset: startOffset, Length: end - startOffset, ChangedArea: out}
}
