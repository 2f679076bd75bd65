// Command vcbt-govmomi is a small vSphere client built on govmomi, used by the lab's tests
// (and the demo) to drive the lab through the real SOAP API without vcbt's own client.
// Every command prints one JSON document on stdout. A vSphere fault is printed as
// {"fault":"<Type>","message":"..."} with exit status 2; other errors exit 1.
//
// Connection: env VCBT_LAB_SDK (https URL), VCBT_LAB_USERNAME, VCBT_LAB_PASSWORD,
// VCBT_LAB_THUMBPRINT (SHA-1, the server certificate is pinned to it).
//
// Commands:
//
//	cbt VM on|off                       ReconfigVM_Task(changeTrackingEnabled)
//	snapshot-create VM NAME             -> {"moref","disks":[{"key","changeId","file","capacityBytes"}]}
//	snapshot-remove VM SNAPSHOT         RemoveSnapshot_Task(removeChildren=false, consolidate=true)
//	snapshot-disks VM SNAPSHOT          the snapshot's disks as above
//	snapshot-remove-all VM              RemoveAllSnapshots_Task
//	revert VM SNAPSHOT                  RevertToSnapshot_Task (the lab refuses it)
//	consolidate VM                      ConsolidateVMDisks_Task
//	vm-disks VM                         the live config's disks as above, plus changeTrackingEnabled,
//	                                    consolidationNeeded and powerState
//	query VM KEY SNAPSHOT|- CHANGEID    loops on startOffset over the whole disk:
//	                                    -> {"capacityBytes","calls","areas":[{"start","length"}]}
//	query-once VM KEY SNAPSHOT|- CHANGEID START   one raw call -> {"startOffset","length","areas"}
//	resize VM KEY BYTES                 ReconfigVM_Task editing capacityInBytes/capacityInKB
//	power VM on|off
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strconv"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type diskJson struct {
	Key           int32  `json:"key"`
	ChangeId      string `json:"changeId"`
	File          string `json:"file"`
	Parent        string `json:"parent,omitempty"`
	CapacityBytes int64  `json:"capacityBytes"`
}

type areaJson struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
}

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		if soap.IsSoapFault(err) {
			f := soap.ToSoapFault(err)
			kind := "unknown"
			if v := f.VimFault(); v != nil {
				kind = typeName(v)
			}
			print(map[string]string{"fault": kind, "message": f.String})
			os.Exit(2)
		}
		var te task.Error
		if errors.As(err, &te) && te.Fault() != nil {
			print(map[string]string{"fault": typeName(te.Fault()), "message": te.LocalizedMessage})
			os.Exit(2)
		}
		if soap.IsVimFault(err) {
			kind := typeName(soap.ToVimFault(err))
			print(map[string]string{"fault": kind, "message": err.Error()})
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "vcbt-govmomi:", err)
		os.Exit(1)
	}
	print(out)
}

func typeName(v interface{}) string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Ptr {
		t = t.Elem()
	}
	return t.Name()
}

func print(v interface{}) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func connect(ctx context.Context) (*vim25.Client, error) {
	u, err := url.Parse(os.Getenv("VCBT_LAB_SDK"))
	if err != nil {
		return nil, err
	}
	sc := soap.NewClient(u, false)
	sc.SetThumbprint(u.Host, os.Getenv("VCBT_LAB_THUMBPRINT"))
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, err
	}
	m := session.NewManager(c)
	if err := m.Login(ctx, url.UserPassword(os.Getenv("VCBT_LAB_USERNAME"), os.Getenv("VCBT_LAB_PASSWORD"))); err != nil {
		return nil, err
	}
	return c, nil
}

func disksOf(devices []types.BaseVirtualDevice) []diskJson {
	var out []diskJson
	for _, d := range object.VirtualDeviceList(devices).SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		b := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		j := diskJson{Key: disk.Key, ChangeId: b.ChangeId, File: b.FileName, CapacityBytes: disk.CapacityInBytes}
		if b.Parent != nil {
			j.Parent = b.Parent.FileName
		}
		out = append(out, j)
	}
	return out
}

func snapshotRef(arg string) *types.ManagedObjectReference {
	if arg == "-" || arg == "" {
		return nil
	}
	return &types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: arg}
}

func run(args []string) (interface{}, error) {
	if len(args) < 2 {
		return nil, errors.New("usage: vcbt-govmomi COMMAND VM ...")
	}
	ctx := context.Background()
	c, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = session.NewManager(c).Logout(ctx) }()
	finder := find.NewFinder(c, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return nil, err
	}
	finder.SetDatacenter(dc)
	vm, err := finder.VirtualMachine(ctx, args[1])
	if err != nil {
		return nil, err
	}
	need := func(n int) error {
		if len(args) < n {
			return fmt.Errorf("%s needs %d arguments", args[0], n-1)
		}
		return nil
	}
	switch args[0] {
	case "cbt":
		if err := need(3); err != nil {
			return nil, err
		}
		task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(args[2] == "on")})
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, task.Wait(ctx)
	case "power":
		if err := need(3); err != nil {
			return nil, err
		}
		var task *object.Task
		if args[2] == "on" {
			task, err = vm.PowerOn(ctx)
		} else {
			task, err = vm.PowerOff(ctx)
		}
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, task.Wait(ctx)
	case "snapshot-create":
		if err := need(3); err != nil {
			return nil, err
		}
		task, err := vm.CreateSnapshot(ctx, args[2], "vcbt lab test", false, false)
		if err != nil {
			return nil, err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return nil, err
		}
		ref := info.Result.(types.ManagedObjectReference)
		return snapshotDisks(ctx, c, ref)
	case "snapshot-disks":
		if err := need(3); err != nil {
			return nil, err
		}
		return snapshotDisks(ctx, c, *snapshotRef(args[2]))
	case "snapshot-remove":
		if err := need(3); err != nil {
			return nil, err
		}
		consolidate := true
		res, err := methods.RemoveSnapshot_Task(ctx, c, &types.RemoveSnapshot_Task{This: *snapshotRef(args[2]), RemoveChildren: false, Consolidate: &consolidate})
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, object.NewTask(c, res.Returnval).Wait(ctx)
	case "snapshot-remove-all":
		res, err := methods.RemoveAllSnapshots_Task(ctx, c, &types.RemoveAllSnapshots_Task{This: vm.Reference()})
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, object.NewTask(c, res.Returnval).Wait(ctx)
	case "revert":
		if err := need(3); err != nil {
			return nil, err
		}
		res, err := methods.RevertToSnapshot_Task(ctx, c, &types.RevertToSnapshot_Task{This: *snapshotRef(args[2])})
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, object.NewTask(c, res.Returnval).Wait(ctx)
	case "consolidate":
		res, err := methods.ConsolidateVMDisks_Task(ctx, c, &types.ConsolidateVMDisks_Task{This: vm.Reference()})
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, object.NewTask(c, res.Returnval).Wait(ctx)
	case "vm-disks":
		var m mo.VirtualMachine
		if err := vm.Properties(ctx, vm.Reference(), []string{"config", "runtime"}, &m); err != nil {
			return nil, err
		}
		return map[string]interface{}{
			"changeTrackingEnabled": m.Config.ChangeTrackingEnabled,
			"consolidationNeeded":   m.Runtime.ConsolidationNeeded,
			"powerState":            m.Runtime.PowerState,
			"disks":                 disksOf(m.Config.Hardware.Device),
		}, nil
	case "query", "query-once":
		if err := need(5); err != nil {
			return nil, err
		}
		key, err := strconv.ParseInt(args[2], 10, 32)
		if err != nil {
			return nil, err
		}
		req := types.QueryChangedDiskAreas{This: vm.Reference(), Snapshot: snapshotRef(args[3]), DeviceKey: int32(key), ChangeId: args[4]}
		if args[0] == "query-once" {
			if err := need(6); err != nil {
				return nil, err
			}
			if req.StartOffset, err = strconv.ParseInt(args[5], 10, 64); err != nil {
				return nil, err
			}
			res, err := methods.QueryChangedDiskAreas(ctx, c, &req)
			if err != nil {
				return nil, err
			}
			return map[string]interface{}{"startOffset": res.Returnval.StartOffset, "length": res.Returnval.Length, "areas": areas(res.Returnval.ChangedArea)}, nil
		}
		capacity, err := capacityAt(ctx, c, vm, req.Snapshot, int32(key))
		if err != nil {
			return nil, err
		}
		var all []areaJson
		calls := 0
		for req.StartOffset < capacity {
			res, err := methods.QueryChangedDiskAreas(ctx, c, &req)
			if err != nil {
				return nil, err
			}
			calls++
			if res.Returnval.Length <= 0 {
				return nil, fmt.Errorf("QueryChangedDiskAreas at %d returned length %d", req.StartOffset, res.Returnval.Length)
			}
			all = append(all, areas(res.Returnval.ChangedArea)...)
			req.StartOffset = res.Returnval.StartOffset + res.Returnval.Length
		}
		return map[string]interface{}{"capacityBytes": capacity, "calls": calls, "areas": merge(all)}, nil
	case "resize":
		if err := need(4); err != nil {
			return nil, err
		}
		key, _ := strconv.ParseInt(args[2], 10, 32)
		size, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil {
			return nil, err
		}
		devices, err := vm.Device(ctx)
		if err != nil {
			return nil, err
		}
		d := devices.FindByKey(int32(key))
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			return nil, fmt.Errorf("no disk %d", key)
		}
		disk.CapacityInBytes = size
		disk.CapacityInKB = size / 1024
		task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: disk},
		}})
		if err != nil {
			return nil, err
		}
		return map[string]bool{"ok": true}, task.Wait(ctx)
	}
	return nil, fmt.Errorf("unknown command %q", args[0])
}

func areas(in []types.DiskChangeExtent) []areaJson {
	out := []areaJson{}
	for _, a := range in {
		out = append(out, areaJson{Start: a.Start, Length: a.Length})
	}
	return out
}

// merge joins touching areas, so results do not depend on how replies were paged.
func merge(in []areaJson) []areaJson {
	out := []areaJson{}
	for _, a := range in {
		if n := len(out); n > 0 && out[n-1].Start+out[n-1].Length == a.Start {
			out[n-1].Length += a.Length
			continue
		}
		out = append(out, a)
	}
	return out
}

func snapshotDisks(ctx context.Context, c *vim25.Client, ref types.ManagedObjectReference) (interface{}, error) {
	var s mo.VirtualMachineSnapshot
	if err := object.NewCommon(c, ref).Properties(ctx, ref, []string{"config"}, &s); err != nil {
		return nil, err
	}
	return map[string]interface{}{"moref": ref.Value, "disks": disksOf(s.Config.Hardware.Device)}, nil
}

func capacityAt(ctx context.Context, c *vim25.Client, vm *object.VirtualMachine, snap *types.ManagedObjectReference, key int32) (int64, error) {
	var devices []types.BaseVirtualDevice
	if snap != nil {
		var s mo.VirtualMachineSnapshot
		if err := object.NewCommon(c, *snap).Properties(ctx, *snap, []string{"config"}, &s); err != nil {
			return 0, err
		}
		devices = s.Config.Hardware.Device
	} else {
		var m mo.VirtualMachine
		if err := vm.Properties(ctx, vm.Reference(), []string{"config"}, &m); err != nil {
			return 0, err
		}
		devices = m.Config.Hardware.Device
	}
	disk, ok := object.VirtualDeviceList(devices).FindByKey(key).(*types.VirtualDisk)
	if !ok {
		return 0, fmt.Errorf("no disk %d", key)
	}
	return disk.CapacityInBytes, nil
}
