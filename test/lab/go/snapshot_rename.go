package main

// RenameSnapshot (VirtualMachineSnapshot.RenameSnapshot): vcsim 0.24 lacks it, and vcbt renews
// the lease in its snapshots' descriptions with it. The lab changes the name and/or the
// description in the VM's snapshot tree, as ESXi does; an unknown snapshot is
// ManagedObjectNotFound, like every call on a removed snapshot.

import (
	"net/http"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func (l *lab) serveRenameSnapshot(w http.ResponseWriter, r *http.Request, req *types.RenameSnapshot) {
	if !l.sessions.valid(r) {
		writeFault(w, faultOfKind("NotAuthenticated", "the session is not authenticated", req.This, ""))
		return
	}
	var lv *labVm
	for _, v := range l.vms {
		if v.snapshotIndex(req.This) >= 0 {
			lv = v
		}
	}
	if lv == nil {
		writeFault(w, &vimFault{fault: &types.ManagedObjectNotFound{Obj: req.This}, message: "The object '" + req.This.Value + "' has already been deleted or has not been completely created"})
		return
	}
	simulator.Map.WithLock(lv.sim, func() {
		if lv.sim.Snapshot == nil {
			return
		}
		var walk func(trees []types.VirtualMachineSnapshotTree)
		walk = func(trees []types.VirtualMachineSnapshotTree) {
			for i := range trees {
				if trees[i].Snapshot == req.This {
					if req.Name != "" {
						trees[i].Name = req.Name
					}
					if req.Description != "" {
						trees[i].Description = req.Description
					}
				}
				walk(trees[i].ChildSnapshotList)
			}
		}
		walk(lv.sim.Snapshot.RootSnapshotList)
	})
	writeResponse(w, &types.RenameSnapshotResponse{})
}
