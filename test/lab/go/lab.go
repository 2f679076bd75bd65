package main

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Sizes that are deliberately not multiples of 1 MiB (but are of 1 KiB, as capacityInKB needs).
var defaultVm0DiskBytes = []int64{20*1024*1024 + 3*1024, 12*1024*1024 + 512*1024}

// The VM that the lab powers off so that tests can query without a snapshot.
const poweredOffVm = "DC0_H0_VM1"

type labDiskInfo struct {
	Key           int32  `json:"key"`
	Label         string `json:"label"`
	CapacityBytes int64  `json:"capacityBytes"`
	File          string `json:"file"`
}

type labVmInfo struct {
	Name         string        `json:"name"`
	Moref        string        `json:"moref"`
	InstanceUuid string        `json:"instanceUuid"`
	PowerState   string        `json:"powerState"`
	Disks        []labDiskInfo `json:"disks"`
}

type labInfo struct {
	Sdk                string      `json:"sdk"`
	Username           string      `json:"username"`
	Password           string      `json:"password"`
	ThumbprintSha1     string      `json:"thumbprintSha1"`
	FingerprintSha256  string      `json:"fingerprintSha256"`
	Control            string      `json:"control"`
	NbdUriTemplate     string      `json:"nbdUriTemplate"`
	NbdLiveUriTemplate string      `json:"nbdLiveUriTemplate"`
	Datacenter         string      `json:"datacenter"`
	Pid                int         `json:"pid"`
	Vms                []labVmInfo `json:"vms"`
}

// labConfig is what POST /config changes.
type labConfig struct {
	CbtBlockBytes    int64 `json:"cbtBlockBytes"`
	MaxAreasPerReply int   `json:"maxAreasPerReply"`
	MaxBytesPerReply int64 `json:"maxBytesPerReply"`
}

// armedFault makes the next `count` calls of a method fail with a fault of type `kind`.
type armedFault struct {
	kind  string
	count int
}

// labFaults is what POST /faults arms; each fires once (or count times) and disarms.
type labFaults struct {
	queryFault        string
	queryFaultCount   int
	httpCutAfterBytes int64 // 0 = disarmed
	// httpStall: the next `count` /folder GET responses longer than afterBytes send exactly
	// afterBytes body bytes and then nothing more, holding the connection open (a stalled
	// datastore server) until the client gives up.
	httpStallAfterBytes int64
	httpStallCount      int
	// methods maps a SOAP method name (e.g. "CreateSnapshot_Task") to its armed fault.
	methods map[string]*armedFault
	// leaveConsolidationNeeded makes the next snapshot removal leave
	// runtime.consolidationNeeded = true until ConsolidateVMDisks_Task runs.
	leaveConsolidationNeeded bool
}

type lab struct {
	// mu serialises every change to the disk model (guest writes, snapshot operations,
	// reconfiguration) so a snapshot freezes one instant.
	mu       sync.Mutex
	stateDir string
	info     labInfo
	model    *simulator.Model
	server   *simulator.Server
	vcsim    http.Handler // vcsim's own mux, which the lab's handler wraps
	control  *http.Server
	vms      map[string]*labVm // by name
	config   labConfig
	faults   labFaults
	exports  *exportSet
	// linksDir holds a hard link to every snapshot's frozen disk (nbd_named.go).
	linksDir string
	sessions *sessionCache
	calls    *soapCalls
	dcName   string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func colonHex(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func startLab(stateDir string, vm0DiskBytes []int64, otherDiskBytes int64) (*lab, error) {
	// vcsim creates each datastore with ioutil.TempDir(""): point it into the state dir so
	// everything the lab writes lives there and goes away with it.
	dsRoot := filepath.Join(stateDir, "datastores")
	if err := os.MkdirAll(dsRoot, 0o700); err != nil {
		return nil, err
	}
	_ = os.Setenv("TMPDIR", dsRoot)
	simulator.Trace = false
	log.SetOutput(noiseFilter{os.Stderr})

	password := randomHex(12)
	model := simulator.VPX()
	model.Autostart = true
	if err := model.Create(); err != nil {
		return nil, err
	}
	model.Service.TLS = new(tls.Config)
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword("vcbt", password)}
	server := model.Service.NewServer()
	server.Config.ErrorLog = log.New(noiseFilter{os.Stderr}, "", log.LstdFlags)

	l := &lab{
		stateDir: stateDir,
		model:    model,
		server:   server,
		vcsim:    server.Config.Handler,
		vms:      map[string]*labVm{},
		config:   labConfig{CbtBlockBytes: 64 * 1024, MaxAreasPerReply: 0, MaxBytesPerReply: 0},
		dcName:   "DC0",
	}
	l.sessions = newSessionCache(l)
	l.calls = &soapCalls{}
	l.exports = newExportSet(filepath.Join(stateDir, "nbd"))
	l.linksDir = filepath.Join(stateDir, "nbd", "snapshots")
	// Every request now passes through the lab first (CBT, snapshots, /folder auth, faults).
	server.Config.Handler = http.HandlerFunc(l.serveHTTP)

	cert := server.Certificate()
	sum1 := sha1.Sum(cert.Raw)
	sum256 := sha256.Sum256(cert.Raw)
	sdk := *server.URL
	sdk.User = nil
	sdk.Host = strings.Replace(sdk.Host, server.URL.Hostname(), "127.0.0.1", 1)
	l.info = labInfo{
		Sdk:               sdk.String(),
		Username:          "vcbt",
		Password:          password,
		ThumbprintSha1:    colonHex(sum1[:]),
		FingerprintSha256: colonHex(sum256[:]),
		Datacenter:        l.dcName,
		Pid:               os.Getpid(),
	}

	if err := l.setupInventory(vm0DiskBytes, otherDiskBytes); err != nil {
		l.stop()
		return nil, err
	}
	named, err := l.exports.startNamed(l.linksDir)
	if err != nil {
		l.stop()
		return nil, err
	}
	l.info.NbdUriTemplate = named.nbdUriTemplate()
	live, err := l.startLive(filepath.Join(stateDir, "nbd", "live"))
	if err != nil {
		l.stop()
		return nil, err
	}
	l.info.NbdLiveUriTemplate = live.liveUriTemplate()
	if err := l.startControl(); err != nil {
		l.stop()
		return nil, err
	}
	return l, nil
}

// setupInventory resizes vcsim's default disks, adds a second disk to the first VM, powers
// one VM off, then gives every disk real files and a lab disk model.
func (l *lab) setupInventory(vm0DiskBytes []int64, otherDiskBytes int64) error {
	ctx := context.Background()
	u := *l.server.URL
	u.User = url.UserPassword(l.info.Username, l.info.Password)
	client, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		return fmt.Errorf("in-process login: %w", err)
	}
	defer func() { _ = client.Logout(ctx) }()
	finder := find.NewFinder(client.Client, true)
	dc, err := finder.Datacenter(ctx, l.dcName)
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	vms, err := finder.VirtualMachineList(ctx, "*")
	if err != nil {
		return err
	}
	for _, vmObj := range vms {
		name, err := vmObj.ObjectName(ctx)
		if err != nil {
			return err
		}
		sizes := []int64{otherDiskBytes}
		if name == "DC0_H0_VM0" {
			sizes = vm0DiskBytes
		}
		if err := reshapeDisks(ctx, vmObj, name, sizes); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if name == poweredOffVm {
			task, err := vmObj.PowerOff(ctx)
			if err != nil {
				return err
			}
			if err := task.Wait(ctx); err != nil {
				return err
			}
		}
		simVm := simulator.Map.Get(vmObj.Reference()).(*simulator.VirtualMachine)
		lv, err := l.adoptVm(simVm)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		l.vms[name] = lv
	}
	l.refreshInfoVms()
	return nil
}

// reshapeDisks replaces vcsim's one 1 MiB disk with disks of the given sizes (device keys
// 2000, 2001, ... as ESXi numbers SCSI disks), through ReconfigVM as an administrator would.
func reshapeDisks(ctx context.Context, vmObj *object.VirtualMachine, name string, sizes []int64) error {
	devices, err := vmObj.Device(ctx)
	if err != nil {
		return err
	}
	disks := devices.SelectByType((*types.VirtualDisk)(nil))
	if len(disks) != 1 {
		return fmt.Errorf("expected vcsim's one disk, found %d", len(disks))
	}
	old := disks[0].(*types.VirtualDisk)
	dir := path.Dir(old.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName)
	changes := []types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{
		Operation:     types.VirtualDeviceConfigSpecOperationRemove,
		FileOperation: types.VirtualDeviceConfigSpecFileOperationDestroy,
		Device:        old,
	}}
	devices = devices.Select(func(d types.BaseVirtualDevice) bool { return d != disks[0] })
	controller, err := devices.FindDiskController("scsi")
	if err != nil {
		return err
	}
	for i, size := range sizes {
		disk := devices.CreateDisk(controller, types.ManagedObjectReference{}, fmt.Sprintf("%s/disk%d.vmdk", dir, i+1))
		disk.Key = int32(2000 + i)
		disk.DeviceInfo = &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1)}
		disk.CapacityInKB = size / 1024
		disk.CapacityInBytes = size
		devices = append(devices, disk)
		changes = append(changes, &types.VirtualDeviceConfigSpec{
			Operation:     types.VirtualDeviceConfigSpecOperationAdd,
			FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate,
			Device:        disk,
		})
	}
	task, err := vmObj.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: changes})
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

func (l *lab) refreshInfoVms() {
	var out []labVmInfo
	for _, name := range sortedVmNames(l.vms) {
		lv := l.vms[name]
		info := labVmInfo{
			Name:         name,
			Moref:        lv.ref.Value,
			InstanceUuid: lv.sim.Config.InstanceUuid,
			PowerState:   string(lv.sim.Runtime.PowerState),
		}
		for _, d := range lv.disks {
			info.Disks = append(info.Disks, labDiskInfo{
				Key: d.key, Label: d.label, CapacityBytes: d.capacityBytes, File: d.datastorePath(d.live()),
			})
		}
		out = append(out, info)
	}
	l.info.Vms = out
}

func (l *lab) stop() {
	if l.control != nil {
		_ = l.control.Close()
	}
	if l.exports != nil {
		l.exports.closeAll()
	}
	if l.server != nil {
		l.server.Close()
	}
	if l.model != nil {
		l.model.Remove()
	}
	_ = os.RemoveAll(filepath.Join(l.stateDir, "datastores"))
	_ = os.RemoveAll(filepath.Join(l.stateDir, "nbd"))
	_ = os.RemoveAll(filepath.Join(l.stateDir, "scratch"))
}

// datastoreDir is the local directory behind a simulated datastore.
func datastoreDir(ref types.ManagedObjectReference) string {
	ds := simulator.Map.Get(ref).(*simulator.Datastore)
	return ds.Info.GetDatastoreInfo().Url
}

// splitDatastorePath splits "[LocalDS_0] VM/disk1.vmdk" into the datastore name and the
// path inside it.
func splitDatastorePath(name string) (datastore, rel string, err error) {
	if i := strings.Index(name, "] "); strings.HasPrefix(name, "[") && i > 0 {
		return name[1:i], name[i+2:], nil
	}
	return "", "", fmt.Errorf("bad datastore path %q", name)
}

// localPathOf is the local file behind a datastore path.
func localPathOf(name string) (string, error) {
	dsName, rel, err := splitDatastorePath(name)
	if err != nil {
		return "", err
	}
	ref, ok := datastoreByName(dsName)
	if !ok {
		return "", fmt.Errorf("datastore %q not found", dsName)
	}
	return filepath.Join(datastoreDir(ref), filepath.FromSlash(rel)), nil
}

func datastoreByName(name string) (types.ManagedObjectReference, bool) {
	for _, obj := range simulator.Map.All("Datastore") {
		ds := obj.(*simulator.Datastore)
		if ds.Name == name {
			return ds.Self, true
		}
	}
	return types.ManagedObjectReference{}, false
}
