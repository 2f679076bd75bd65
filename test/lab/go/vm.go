package main

// A lab VM: its disks, its snapshots (oldest first, always a single line because the lab
// refuses RevertToSnapshot), and the reconciliation that keeps vcsim's view (device
// backings, snapshot configs) in step with the disk model after every vSphere operation.

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type labVm struct {
	name string
	ref  types.ManagedObjectReference
	sim  *simulator.VirtualMachine
	// disks in device order.
	disks []*labDisk
	// snapshots[i] froze disks[*].chain[i].
	snapshots []types.ManagedObjectReference
	// cbtWanted mirrors config.changeTrackingEnabled as last seen; cbtPending means it was
	// enabled on a powered-on VM and waits for the next stun (snapshot create or remove).
	cbtWanted  bool
	cbtPending bool
	// snapshotFiles holds the local path of each snapshot's .vmsn file, which the lab deletes
	// itself when the snapshot goes (see adoptSnapshotFile).
	snapshotFiles map[types.ManagedObjectReference]string
	// linksDir is where each snapshot's disks get their export links (nbd_named.go).
	linksDir string
	// openWriters counts connections writing the VM's live disks (nbd_live.go).
	openWriters int
}

func (l *lab) adoptVm(sim *simulator.VirtualMachine) (*labVm, error) {
	lv := &labVm{name: sim.Name, ref: sim.Self, sim: sim, snapshotFiles: map[types.ManagedObjectReference]string{}, linksDir: l.linksDir}
	var err error
	simulator.Map.WithLock(sim, func() {
		for _, dev := range object.VirtualDeviceList(sim.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
			var d *labDisk
			d, err = newLabDisk(lv.name, dev.(*types.VirtualDisk))
			if err != nil {
				return
			}
			lv.disks = append(lv.disks, d)
		}
	})
	if err != nil {
		return nil, err
	}
	// The lab consolidates whenever a snapshot is removed, so nothing ever needs it.
	sim.Runtime.ConsolidationNeeded = types.NewBool(false)
	lv.syncToVcsim()
	return lv, nil
}

func (lv *labVm) disk(key int32) *labDisk {
	for _, d := range lv.disks {
		if d.key == key {
			return d
		}
	}
	return nil
}

func (lv *labVm) snapshotIndex(ref types.ManagedObjectReference) int {
	for i, s := range lv.snapshots {
		if s == ref {
			return i
		}
	}
	return -1
}

func (lv *labVm) poweredOn() bool {
	return lv.sim.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
}

// vcsimSnapshots lists the VM's snapshots in vcsim's tree, parents before children.
func (lv *labVm) vcsimSnapshots() []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(list []types.VirtualMachineSnapshotTree) {
		for _, t := range list {
			out = append(out, t.Snapshot)
			walk(t.ChildSnapshotList)
		}
	}
	if lv.sim.Snapshot != nil {
		walk(lv.sim.Snapshot.RootSnapshotList)
	}
	return out
}

func (lv *labVm) snapshotName(ref types.ManagedObjectReference) string {
	var name string
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(list []types.VirtualMachineSnapshotTree) {
		for _, t := range list {
			if t.Snapshot == ref {
				name = t.Name
			}
			walk(t.ChildSnapshotList)
		}
	}
	if lv.sim.Snapshot != nil {
		walk(lv.sim.Snapshot.RootSnapshotList)
	}
	return name
}

// stun is what a snapshot create/remove does to CBT on ESXi: a pending enable takes effect.
func (lv *labVm) stun() {
	if lv.cbtPending {
		for _, d := range lv.disks {
			d.startEpoch()
		}
		lv.cbtPending = false
	}
}

// reconcile brings the disk model in line with vcsim after a forwarded vSphere operation:
// removed snapshots are consolidated, a new snapshot freezes the disks, CBT changes apply.
// Called with l.mu held.
func (lv *labVm) reconcile() error {
	var err error
	simulator.Map.WithLock(lv.sim, func() { err = lv.reconcileLocked() })
	return err
}

func (lv *labVm) reconcileLocked() error {
	lv.normalizeExtraConfig()
	// CBT enable/disable from ReconfigVM.
	wanted := lv.sim.Config.ChangeTrackingEnabled != nil && *lv.sim.Config.ChangeTrackingEnabled
	if wanted != lv.cbtWanted {
		lv.cbtWanted = wanted
		if wanted {
			if lv.poweredOn() {
				lv.cbtPending = true
			} else {
				for _, d := range lv.disks {
					d.startEpoch()
				}
			}
		} else {
			lv.cbtPending = false
			for _, d := range lv.disks {
				d.stopEpoch()
			}
		}
	}

	// A power cycle also applies a pending enable.
	if lv.cbtPending && !lv.poweredOn() {
		lv.stun()
	}

	present := map[types.ManagedObjectReference]bool{}
	current := lv.vcsimSnapshots()
	for _, s := range current {
		present[s] = true
	}
	// Removed snapshots: consolidate, newest first so indexes stay valid.
	for i := len(lv.snapshots) - 1; i >= 0; i-- {
		if present[lv.snapshots[i]] {
			continue
		}
		lv.stun()
		for _, d := range lv.disks {
			if err := d.consolidate(i); err != nil {
				return fmt.Errorf("consolidate disk %d: %w", d.key, err)
			}
		}
		lv.dropSnapshotFile(lv.snapshots[i])
		lv.unlinkSnapshot(lv.snapshots[i])
		lv.snapshots = append(lv.snapshots[:i], lv.snapshots[i+1:]...)
	}
	// New snapshots (vcsim appends; the lab refuses reverts, so the line never branches).
	known := map[types.ManagedObjectReference]bool{}
	for _, s := range lv.snapshots {
		known[s] = true
	}
	for _, s := range current {
		if known[s] {
			continue
		}
		lv.stun()
		for _, d := range lv.disks {
			if _, err := d.freeze(); err != nil {
				return fmt.Errorf("freeze disk %d: %w", d.key, err)
			}
		}
		lv.snapshots = append(lv.snapshots, s)
		lv.adoptSnapshotFile(s)
		if err := lv.linkSnapshot(s, len(lv.snapshots)-1); err != nil {
			return err
		}
		// vcsim's snapshot config is a shallow copy sharing the live device slice: give the
		// snapshot its own disk devices before the live ones change.
		if snap, ok := simulator.Map.Get(s).(*simulator.VirtualMachineSnapshot); ok {
			snap.Config.Hardware.Device = copyDevices(snap.Config.Hardware.Device)
		}
	}
	lv.syncLocked()
	return nil
}

// adoptSnapshotFile keeps vcsim from deleting the wrong file when the snapshot is removed.
// vcsim deletes a removed snapshot's .vmsn by its layoutEx file key, but every removal also
// runs its RefreshStorageInfo, which renumbers all file keys of the VM's folder: a later
// removal then deletes whatever file has the stale key now - often one of the lab's disk
// extents, which broke consolidation (the lab kept a snapshot vcsim no longer had, and every
// later snapshot was unknown to it). Right after creation the key is still right: the lab
// remembers the file by name, points vcsim's snapshot layout at no file, and deletes the
// file itself on removal. Called with the VM locked.
func (lv *labVm) adoptSnapshotFile(ref types.ManagedObjectReference) {
	if lv.sim.LayoutEx == nil {
		return
	}
	for i := range lv.sim.LayoutEx.Snapshot {
		layout := &lv.sim.LayoutEx.Snapshot[i]
		if layout.Key != ref {
			continue
		}
		for _, f := range lv.sim.LayoutEx.File {
			if f.Key == layout.DataKey {
				if local, err := localPathOf(f.Name); err == nil {
					lv.snapshotFiles[ref] = local
				}
			}
		}
		layout.DataKey = -1
		layout.MemoryKey = -1
	}
}

func (lv *labVm) dropSnapshotFile(ref types.ManagedObjectReference) {
	if local, ok := lv.snapshotFiles[ref]; ok {
		_ = os.Remove(local)
		delete(lv.snapshotFiles, ref)
	}
}

// linkPath is the export link of a snapshot's disk: a hard link to the frozen extent that
// consolidation renames cannot move (see nbd_named.go).
func (lv *labVm) linkPath(snapshot string, diskKey int32) string {
	return filepath.Join(lv.linksDir, linkName(snapshot, diskKey))
}

// linkSnapshot links the disks the snapshot (index i) froze.
func (lv *labVm) linkSnapshot(ref types.ManagedObjectReference, i int) error {
	if err := os.MkdirAll(lv.linksDir, 0o700); err != nil {
		return err
	}
	for _, d := range lv.disks {
		link := lv.linkPath(ref.Value, d.key)
		_ = os.Remove(link)
		if err := os.Link(d.rawPath(d.chain[i]), link); err != nil {
			return fmt.Errorf("link snapshot %s disk %d for NBD: %w", ref.Value, d.key, err)
		}
	}
	return nil
}

func (lv *labVm) unlinkSnapshot(ref types.ManagedObjectReference) {
	for _, d := range lv.disks {
		_ = os.Remove(lv.linkPath(ref.Value, d.key))
	}
}

func (lv *labVm) setConsolidationNeeded(needed bool) {
	simulator.Map.Update(lv.sim, []types.PropertyChange{{Name: "runtime.consolidationNeeded", Val: needed}})
}

func (lv *labVm) syncToVcsim() {
	simulator.Map.WithLock(lv.sim, lv.syncLocked)
}

// syncLocked writes the model's file names, parents, ChangeIds and capacities into the
// live device list and every snapshot's device list.
func (lv *labVm) syncLocked() {
	devices := copyDevices(lv.sim.Config.Hardware.Device)
	for _, d := range lv.disks {
		applyDiskState(devices, d, len(d.chain)-1, d.liveChangeId())
	}
	simulator.Map.Update(lv.sim, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
	for i, ref := range lv.snapshots {
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok {
			log.Printf("vcbt-lab: snapshot %s of %s vanished from vcsim", ref.Value, lv.name)
			continue
		}
		for _, d := range lv.disks {
			applyDiskState(snap.Config.Hardware.Device, d, i, d.chain[i].changeId)
		}
	}
}

// copyDevices copies the slice and every VirtualDisk (with its backing), so changes to the
// copy's disks never show through another config sharing the old slice.
func copyDevices(devices []types.BaseVirtualDevice) []types.BaseVirtualDevice {
	out := make([]types.BaseVirtualDevice, len(devices))
	for i, dev := range devices {
		if disk, ok := dev.(*types.VirtualDisk); ok {
			c := *disk
			if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				bc := *b
				c.Backing = &bc
			}
			out[i] = &c
			continue
		}
		out[i] = dev
	}
	return out
}

func applyDiskState(devices []types.BaseVirtualDevice, d *labDisk, index int, changeId string) {
	for _, dev := range devices {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok || disk.Key != d.key {
			continue
		}
		s := d.chain[index]
		disk.CapacityInBytes = s.capacityBytes
		disk.CapacityInKB = s.capacityBytes / 1024
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			return
		}
		backing.FileName = d.datastorePath(s)
		ds := d.datastore
		backing.Datastore = &ds
		backing.ChangeId = changeId
		backing.Parent = parentBacking(d, index-1)
	}
}

func parentBacking(d *labDisk, index int) *types.VirtualDiskFlatVer2BackingInfo {
	if index < 0 {
		return nil
	}
	ds := d.datastore
	s := d.chain[index]
	return &types.VirtualDiskFlatVer2BackingInfo{
		VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: d.datastorePath(s), Datastore: &ds},
		DiskMode:                     string(types.VirtualDiskModePersistent),
		ThinProvisioned:              types.NewBool(true),
		ChangeId:                     s.changeId,
		Parent:                       parentBacking(d, index-1),
	}
}
