package main

// The control API (plain HTTP on 127.0.0.1, JSON): what happens inside the guest and on the
// host that vSphere's API does not offer - guest writes, admin resizes, ground-truth hashes
// and contents, fault injection, NBD exports. Errors are {"error": "..."} with a 4xx/5xx code.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

type httpError struct {
	status  int
	message string
}

func (e *httpError) Error() string { return e.message }

func errorf(status int, format string, args ...interface{}) error {
	return &httpError{status: status, message: fmt.Sprintf(format, args...)}
}

func (l *lab) startControl() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	l.control = &http.Server{Handler: http.HandlerFunc(l.serveControl)}
	l.info.Control = "http://" + ln.Addr().String()
	go func() { _ = l.control.Serve(ln) }()
	return nil
}

func writeJson(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (l *lab) serveControl(w http.ResponseWriter, r *http.Request) {
	result, err := l.route(w, r)
	if err != nil {
		status := http.StatusInternalServerError
		if he, ok := err.(*httpError); ok {
			status = he.status
		}
		writeJson(w, status, map[string]string{"error": err.Error()})
		return
	}
	if result != nil {
		writeJson(w, http.StatusOK, result)
	}
}

func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "query parameter %s=%q is not an integer", name, v)
	}
	return n, nil
}

// route returns a JSON-able result, or nil when it wrote the response itself.
func (l *lab) route(w http.ResponseWriter, r *http.Request) (interface{}, error) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/info":
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.info, nil
	case r.Method == http.MethodPost && r.URL.Path == "/config":
		return l.postConfig(r)
	case r.Method == http.MethodPost && r.URL.Path == "/faults":
		return l.postFaults(r)
	case r.Method == http.MethodGet && r.URL.Path == "/faults":
		return l.armedFaults(), nil
	case r.Method == http.MethodPost && r.URL.Path == "/sessions/expire":
		n, err := l.expireSessions()
		if err != nil {
			return nil, err
		}
		return map[string]int{"expired": n}, nil
	case r.Method == http.MethodGet && r.URL.Path == "/soap-calls":
		return map[string][]string{"calls": l.calls.list()}, nil
	case r.Method == http.MethodDelete && r.URL.Path == "/soap-calls":
		l.calls.clear()
		return map[string]bool{"cleared": true}, nil
	case r.Method == http.MethodPost && r.URL.Path == "/scratch":
		capacity, err := queryInt(r, "capacityBytes")
		if err != nil {
			return nil, err
		}
		return l.scratch(capacity)
	case r.Method == http.MethodDelete && len(parts) == 2 && parts[0] == "nbd":
		if !l.exports.close(parts[1]) {
			return nil, errorf(http.StatusNotFound, "no NBD export %q", parts[1])
		}
		return map[string]bool{"closed": true}, nil
	case len(parts) >= 2 && parts[0] == "vms":
		l.mu.Lock()
		defer l.mu.Unlock()
		lv := l.vms[parts[1]]
		if lv == nil {
			return nil, errorf(http.StatusNotFound, "no VM named %q", parts[1])
		}
		if len(parts) == 3 && parts[2] == "snapshots" && r.Method == http.MethodGet {
			return l.listSnapshots(lv), nil
		}
		if len(parts) == 3 && parts[2] == "delta-format" && r.Method == http.MethodPost {
			format := r.URL.Query().Get("format")
			if format != deltaVmfsSparse && format != deltaSeSparse {
				return nil, errorf(http.StatusBadRequest, "format=%q: use vmfsSparse or seSparse", format)
			}
			for _, d := range lv.disks {
				d.deltaFormat = format
			}
			return map[string]string{"deltaFormat": format}, nil
		}
		if len(parts) == 5 && parts[2] == "disks" {
			key, err := strconv.ParseInt(parts[3], 10, 32)
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "disk key %q is not a number", parts[3])
			}
			d := lv.disk(int32(key))
			if d == nil {
				return nil, errorf(http.StatusNotFound, "VM %s has no disk with key %d", lv.name, key)
			}
			return l.diskRoute(w, r, lv, d, parts[4])
		}
	}
	return nil, errorf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path)
}

// stateAt picks the live state, or the one a snapshot froze. Called with l.mu held.
func stateAt(lv *labVm, d *labDisk, r *http.Request) (*diskState, error) {
	snap := r.URL.Query().Get("snapshot")
	if snap == "" {
		return d.live(), nil
	}
	i := lv.snapshotIndex(types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: snap})
	if i < 0 {
		return nil, errorf(http.StatusNotFound, "VM %s has no snapshot %q", lv.name, snap)
	}
	return d.chain[i], nil
}

// diskRoute serves /vms/{vm}/disks/{key}/{action}. Called with l.mu held.
func (l *lab) diskRoute(w http.ResponseWriter, r *http.Request, lv *labVm, d *labDisk, action string) (interface{}, error) {
	switch {
	case action == "write" && r.Method == http.MethodPost:
		offset, err := queryInt(r, "offset")
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if err := d.write(offset, data); err != nil {
			return nil, errorf(http.StatusBadRequest, "VM %s disk %d: %v", lv.name, d.key, err)
		}
		return map[string]int64{"offset": offset, "length": int64(len(data))}, nil
	case action == "unmap" && r.Method == http.MethodPost:
		offset, err := queryInt(r, "offset")
		if err != nil {
			return nil, err
		}
		length, err := queryInt(r, "length")
		if err != nil {
			return nil, err
		}
		if err := d.unmap(offset, length); err != nil {
			return nil, errorf(http.StatusBadRequest, "VM %s disk %d: %v", lv.name, d.key, err)
		}
		return map[string]int64{"offset": offset, "length": length}, nil
	case action == "resize" && r.Method == http.MethodPost:
		capacity, err := queryInt(r, "capacityBytes")
		if err != nil {
			return nil, err
		}
		if err := d.resize(capacity); err != nil {
			return nil, errorf(http.StatusConflict, "VM %s disk %d: %v", lv.name, d.key, err)
		}
		lv.syncToVcsim()
		l.refreshInfoVms()
		return map[string]int64{"capacityBytes": capacity}, nil
	case action == "sha256" && r.Method == http.MethodGet:
		s, err := stateAt(lv, d, r)
		if err != nil {
			return nil, err
		}
		sum, err := sha256File(d.rawPath(s))
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"sha256": sum, "capacityBytes": s.capacityBytes}, nil
	case action == "content" && r.Method == http.MethodGet:
		s, err := stateAt(lv, d, r)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(d.rawPath(s))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(s.capacityBytes, 10))
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, f)
		return nil, nil
	case action == "nbd" && r.Method == http.MethodPost:
		s, err := stateAt(lv, d, r)
		if err != nil {
			return nil, err
		}
		// A snapshot's export serves its link, which consolidation renames cannot move.
		file := d.rawPath(s)
		if snap := r.URL.Query().Get("snapshot"); snap != "" {
			file = lv.linkPath(snap, d.key)
		}
		e, err := l.exports.start(file, true)
		if err != nil {
			return nil, err
		}
		return map[string]string{"uri": e.uri(), "exportName": "", "id": e.id, "file": d.datastorePath(s)}, nil
	}
	return nil, errorf(http.StatusNotFound, "no disk action %s %s", r.Method, action)
}

type snapshotDiskJson struct {
	Key      int32  `json:"key"`
	ChangeId string `json:"changeId"`
	File     string `json:"file"`
}

type snapshotJson struct {
	Moref string             `json:"moref"`
	Name  string             `json:"name"`
	Disks []snapshotDiskJson `json:"disks"`
}

func (l *lab) listSnapshots(lv *labVm) []snapshotJson {
	out := []snapshotJson{}
	for i, ref := range lv.snapshots {
		s := snapshotJson{Moref: ref.Value, Name: lv.snapshotName(ref), Disks: []snapshotDiskJson{}}
		for _, d := range lv.disks {
			s.Disks = append(s.Disks, snapshotDiskJson{Key: d.key, ChangeId: d.chain[i].changeId, File: d.datastorePath(d.chain[i])})
		}
		out = append(out, s)
	}
	return out
}

func (l *lab) postConfig(r *http.Request) (interface{}, error) {
	var c struct {
		CbtBlockBytes    *int64 `json:"cbtBlockBytes"`
		MaxAreasPerReply *int   `json:"maxAreasPerReply"`
		MaxBytesPerReply *int64 `json:"maxBytesPerReply"`
		// DatastoreFreeBytes overrides every datastore's free space (import_vapp.go); -1 = vcsim's.
		DatastoreFreeBytes *int64 `json:"datastoreFreeBytes"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, errorf(http.StatusBadRequest, "config body: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.config
	if c.CbtBlockBytes != nil {
		if *c.CbtBlockBytes <= 0 || *c.CbtBlockBytes%trackUnitBytes != 0 {
			return nil, errorf(http.StatusBadRequest, "cbtBlockBytes must be a positive multiple of %d", trackUnitBytes)
		}
		next.CbtBlockBytes = *c.CbtBlockBytes
	}
	if c.MaxAreasPerReply != nil {
		if *c.MaxAreasPerReply < 0 {
			return nil, errorf(http.StatusBadRequest, "maxAreasPerReply must be >= 0 (0 = unlimited)")
		}
		next.MaxAreasPerReply = *c.MaxAreasPerReply
	}
	if c.MaxBytesPerReply != nil {
		if *c.MaxBytesPerReply < 0 || (*c.MaxBytesPerReply > 0 && *c.MaxBytesPerReply%512 != 0) {
			return nil, errorf(http.StatusBadRequest, "maxBytesPerReply must be 0 (unlimited) or a positive multiple of 512")
		}
		next.MaxBytesPerReply = *c.MaxBytesPerReply
	}
	if c.DatastoreFreeBytes != nil {
		setDatastoreFreeBytes(*c.DatastoreFreeBytes)
	}
	l.config = next
	return l.config, nil
}

// faultJson is one armed SOAP fault: its type and how many more calls it fails.
type faultJson struct {
	Fault string `json:"fault"`
	Count int    `json:"count"`
}

// armedFaultsJson answers GET /faults: what is still armed, in POST /faults' shape, with
// disarmed faults left out (so nothing armed is {}).
type armedFaultsJson struct {
	QueryChangedDiskAreas *faultJson           `json:"queryChangedDiskAreas,omitempty"`
	HttpCutAfterBytes     int64                `json:"httpCutAfterBytes,omitempty"`
	HttpStall             *httpStallJson       `json:"httpStall,omitempty"`
	NbdCutAfterBytes      int64                `json:"nbdCutAfterBytes,omitempty"`
	Methods               map[string]faultJson `json:"methods,omitempty"`
	ConsolidationNeeded   bool                 `json:"consolidationNeeded,omitempty"`
	ExpireSessionsBefore  int                  `json:"expireSessionsBeforeCall,omitempty"`
	NfcUploadCutAfter     int64                `json:"nfcUploadCutAfterBytes,omitempty"`
}

func (l *lab) armedFaults() armedFaultsJson {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := armedFaultsJson{
		HttpCutAfterBytes:    l.faults.httpCutAfterBytes,
		NbdCutAfterBytes:     l.exports.cut.armed(),
		ConsolidationNeeded:  l.faults.leaveConsolidationNeeded,
		ExpireSessionsBefore: l.calls.armed(),
		NfcUploadCutAfter:    armedNfcCut(),
	}
	if l.faults.httpStallCount > 0 {
		out.HttpStall = &httpStallJson{AfterBytes: l.faults.httpStallAfterBytes, Count: l.faults.httpStallCount}
	}
	if l.faults.queryFaultCount > 0 {
		out.QueryChangedDiskAreas = &faultJson{Fault: l.faults.queryFault, Count: l.faults.queryFaultCount}
	}
	for name, m := range l.faults.methods {
		if out.Methods == nil {
			out.Methods = map[string]faultJson{}
		}
		out.Methods[name] = faultJson{Fault: m.kind, Count: m.count}
	}
	return out
}

func (l *lab) postFaults(r *http.Request) (interface{}, error) {
	var f struct {
		QueryChangedDiskAreas *faultJson           `json:"queryChangedDiskAreas"`
		HttpCutAfterBytes     *int64               `json:"httpCutAfterBytes"`
		HttpStall             *httpStallJson       `json:"httpStall"`
		NbdCutAfterBytes      *int64               `json:"nbdCutAfterBytes"`
		Methods               map[string]faultJson `json:"methods"`
		ConsolidationNeeded   *bool                `json:"consolidationNeeded"`
		ExpireSessionsBefore  *int                 `json:"expireSessionsBeforeCall"`
		NfcUploadCutAfter     *int64               `json:"nfcUploadCutAfterBytes"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, errorf(http.StatusBadRequest, "faults body: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if q := f.QueryChangedDiskAreas; q != nil {
		if q.Fault == "" {
			return nil, errorf(http.StatusBadRequest, "queryChangedDiskAreas.fault is required")
		}
		count := q.Count
		if count == 0 {
			count = 1
		}
		l.faults.queryFault, l.faults.queryFaultCount = q.Fault, count
	}
	if f.HttpCutAfterBytes != nil {
		l.faults.httpCutAfterBytes = *f.HttpCutAfterBytes
	}
	if s := f.HttpStall; s != nil {
		if s.AfterBytes < 0 || s.Count < 0 {
			return nil, errorf(http.StatusBadRequest, "httpStall.afterBytes and count must be >= 0 (count 0 disarms)")
		}
		l.faults.httpStallAfterBytes, l.faults.httpStallCount = s.AfterBytes, s.Count
	}
	for name, m := range f.Methods {
		if m.Fault == "" {
			return nil, errorf(http.StatusBadRequest, "methods.%s.fault is required", name)
		}
		if l.faults.methods == nil {
			l.faults.methods = map[string]*armedFault{}
		}
		count := m.Count
		if count == 0 {
			count = 1
		}
		l.faults.methods[name] = &armedFault{kind: m.Fault, count: count}
	}
	if f.ConsolidationNeeded != nil {
		l.faults.leaveConsolidationNeeded = *f.ConsolidationNeeded
	}
	if f.NbdCutAfterBytes != nil {
		l.exports.cut.arm(*f.NbdCutAfterBytes)
	}
	if f.NfcUploadCutAfter != nil {
		armNfcCut(*f.NfcUploadCutAfter)
	}
	if f.ExpireSessionsBefore != nil {
		if *f.ExpireSessionsBefore < 0 {
			return nil, errorf(http.StatusBadRequest, "expireSessionsBeforeCall must be >= 0 (0 disarms)")
		}
		l.calls.arm(*f.ExpireSessionsBefore)
	}
	return map[string]bool{"armed": true}, nil
}

func (l *lab) scratch(capacityBytes int64) (interface{}, error) {
	if capacityBytes <= 0 {
		return nil, errorf(http.StatusBadRequest, "capacityBytes must be positive")
	}
	dir := filepath.Join(l.stateDir, "scratch")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "scratch-*.img")
	if err != nil {
		return nil, err
	}
	err = f.Truncate(capacityBytes)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	e, err := l.exports.start(f.Name(), false)
	if err != nil {
		return nil, err
	}
	return map[string]string{"uri": e.uri(), "path": f.Name(), "id": e.id}, nil
}

// httpStallJson arms the stalled-datastore fault (see labFaults.httpStall*).
type httpStallJson struct {
	AfterBytes int64 `json:"afterBytes"`
	Count      int   `json:"count"`
}
