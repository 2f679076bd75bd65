package main

// CreateVM_Task as vCenter does it, on top of vcsim's: a name already used by a VM of the
// datacenter fails the task with DuplicateName (vcsim would create a second VM of that
// name), and a VM vcsim created becomes a lab VM at once, its new disks real files with CBT
// and snapshots like every other disk (readable and writable through /folder, the NBD
// endpoints and the control API).

import (
	"encoding/xml"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// serveCreateVm handles CreateVM_Task. Called with l.mu held.
func (l *lab) serveCreateVm(w http.ResponseWriter, r *http.Request, body []byte, req *types.CreateVM_Task) {
	name := req.Config.Name
	if existing, ok := l.vms[name]; ok && l.sessions.valid(r) {
		f := &vimFault{fault: &types.DuplicateName{Name: name, Object: existing.ref}, message: fmt.Sprintf("The name '%s' already exists.", name)}
		l.failedTask(w, req.This, "CreateVM_Task", f)
		return
	}
	rec := l.forward(r, body)
	for _, entity := range simulator.Map.All("VirtualMachine") {
		sim, ok := entity.(*simulator.VirtualMachine)
		if !ok || sim.Name != name {
			continue
		}
		if _, known := l.vms[name]; known {
			break
		}
		lv, err := l.adoptVm(sim)
		if err != nil {
			log.Printf("vcbt-lab: CreateVM_Task %s: %v", name, err)
			break
		}
		l.vms[name] = lv
		l.refreshInfoVms()
		break
	}
	relay(w, rec)
}

// failedTask answers a *_Task call with a task that ends in error with f (as vCenter reports
// most failures of a task method).
func (l *lab) failedTask(w http.ResponseWriter, this types.ManagedObjectReference, method string, f *vimFault) {
	entity := simulator.Map.Get(this)
	if entity == nil {
		writeFault(w, f)
		return
	}
	task := simulator.CreateTask(entity, strings.TrimSuffix(method, "_Task"), func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, f.fault
	})
	ref := task.Run()
	// vcsim's message is the Go type name; give the task vCenter-like text instead.
	simulator.Map.Update(task, []types.PropertyChange{{Name: "info.error", Val: types.LocalizedMethodFault{Fault: f.fault, LocalizedMessage: f.message}}})
	writeResponse(w, &taskResponse{XMLName: xml.Name{Space: "urn:vim25", Local: method + "Response"}, Returnval: ref})
}
