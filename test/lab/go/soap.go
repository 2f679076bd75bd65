package main

// The lab's front handler: every request to vcsim's server passes here. SOAP calls that
// touch disks are forwarded to vcsim (which checks the session and runs its synchronous
// task) and then reconciled with the disk model under l.mu; QueryChangedDiskAreas, which
// vcsim lacks, is answered here; /folder gets ESXi's authentication and fault injection.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

var interceptedMethods = []string{
	"QueryChangedDiskAreas", "CreateSnapshot_Task", "RemoveSnapshot_Task", "RemoveAllSnapshots_Task",
	"RevertToSnapshot_Task", "RevertToCurrentSnapshot_Task", "ReconfigVM_Task", "ConsolidateVMDisks_Task",
	"PowerOnVM_Task", "PowerOffVM_Task", "RenameSnapshot", "CreateVM_Task", "ImportVApp", "HttpNfcLeaseComplete", "HttpNfcLeaseAbort",
	"CreateImportSpec",
}

func (l *lab) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/folder/"):
		l.serveFolder(w, r)
	case strings.HasPrefix(r.URL.Path, "/nfc/"):
		l.serveNfc(w, r)
	case r.URL.Path == "/sdk" && r.Method == http.MethodPost:
		l.serveSdk(w, r)
	default:
		l.vcsim.ServeHTTP(w, r)
	}
}

func (l *lab) forward(r *http.Request, body []byte) *httptest.ResponseRecorder {
	inner := r.Clone(r.Context())
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	l.vcsim.ServeHTTP(rec, inner)
	return rec
}

func relay(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (l *lab) serveSdk(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.UserAgent() != labUserAgent {
		method := soapMethodName(body)
		if l.calls.record(method) {
			if _, err := l.expireSessions(); err != nil {
				log.Printf("vcbt-lab: expiring sessions before %s: %v", method, err)
			}
		}
		if (method == "RetrievePropertiesEx" || method == "RetrieveProperties") && l.endedSession(r) && l.serveEndedSessionRead(w, method, body) {
			return
		}
	}
	l.mu.Lock()
	injecting := len(l.faults.methods) > 0
	l.mu.Unlock()
	if injecting && l.injectMethodFault(w, r, body) {
		return
	}
	name := ""
	for _, m := range interceptedMethods {
		if bytes.Contains(body, []byte("<"+m)) || bytes.Contains(body, []byte(":"+m+">")) || bytes.Contains(body, []byte(":"+m+" ")) {
			name = m
			break
		}
	}
	if name == "" {
		relay(w, l.forward(r, body))
		return
	}
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil || method.Name != name {
		relay(w, l.forward(r, body))
		return
	}

	// Imports take l.mu themselves (a rolled-back import destroys its VM through vcsim's SOAP).
	switch name {
	case "ImportVApp":
		l.serveImportVApp(w, r, body, method.Body.(*types.ImportVApp))
		return
	case "HttpNfcLeaseComplete", "HttpNfcLeaseAbort":
		l.serveLeaseEnd(w, r, body, name, method.This)
		return
	case "CreateImportSpec":
		relay(w, l.forward(r, vcsimOvfNames(body)))
		return
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if name == "QueryChangedDiskAreas" {
		l.serveQuery(w, r, body, method.Body.(*types.QueryChangedDiskAreas))
		return
	}
	if name == "RenameSnapshot" {
		l.serveRenameSnapshot(w, r, method.Body.(*types.RenameSnapshot))
		return
	}
	if name == "CreateVM_Task" {
		l.serveCreateVm(w, r, body, method.Body.(*types.CreateVM_Task))
		return
	}
	if name == "ConsolidateVMDisks_Task" {
		l.serveConsolidate(w, r, body, method.This)
		return
	}

	// Operations on a snapshot name the snapshot; find its VM before vcsim removes it.
	var lv *labVm
	switch name {
	case "RemoveSnapshot_Task", "RevertToSnapshot_Task":
		for _, v := range l.vms {
			if v.snapshotIndex(method.This) >= 0 {
				lv = v
			}
		}
	default:
		lv = l.vmByRef(method.This)
	}
	if lv != nil && l.sessions.valid(r) {
		if f := l.precheck(lv, name, method.Body); f != nil {
			writeFault(w, f)
			return
		}
	}
	rec := l.forward(r, body)
	if lv != nil {
		if name == "RemoveSnapshot_Task" || name == "RemoveAllSnapshots_Task" {
			if l.faults.leaveConsolidationNeeded {
				l.faults.leaveConsolidationNeeded = false
				lv.setConsolidationNeeded(true)
			}
		}
		if err := lv.reconcile(); err != nil {
			log.Printf("vcbt-lab: %s on %s: %v", name, lv.name, err)
		}
		l.refreshInfoVms()
	}
	relay(w, rec)
}

// precheck refuses, as a SOAP fault, what the lab cannot model faithfully or what ESXi
// refuses: reverting (it would fork the snapshot line; use remove instead), shrinking a disk,
// growing a disk that has snapshots.
func (l *lab) precheck(lv *labVm, name string, body interface{}) *vimFault {
	switch name {
	case "PowerOnVM_Task", "CreateSnapshot_Task":
		if lv.openWriters > 0 && len(lv.disks) > 0 {
			file := lv.disks[0].datastorePath(lv.disks[0].live())
			return &vimFault{fault: &types.FileLocked{FileFault: types.FileFault{File: file}},
				message: fmt.Sprintf("VM %s: its disks are open for writing through NBD (%d connections)", lv.name, lv.openWriters)}
		}
	case "RevertToSnapshot_Task", "RevertToCurrentSnapshot_Task":
		return &vimFault{fault: &types.NotSupported{}, message: "the vcbt lab does not support reverting to a snapshot"}
	case "ReconfigVM_Task":
		spec := body.(*types.ReconfigVM_Task).Spec
		for _, change := range spec.DeviceChange {
			c := change.GetVirtualDeviceConfigSpec()
			disk, ok := c.Device.(*types.VirtualDisk)
			if !ok || c.Operation != types.VirtualDeviceConfigSpecOperationEdit {
				continue
			}
			d := lv.disk(disk.Key)
			if d == nil {
				continue
			}
			want := d.capacityBytes
			if disk.CapacityInBytes != 0 && disk.CapacityInBytes != d.capacityBytes {
				want = disk.CapacityInBytes
			} else if disk.CapacityInKB*1024 != d.capacityBytes && disk.CapacityInKB != 0 {
				want = disk.CapacityInKB * 1024
			}
			if want == d.capacityBytes {
				continue
			}
			if want < d.capacityBytes || want%1024 != 0 {
				return &vimFault{fault: &types.InvalidArgument{InvalidProperty: "capacityInKB"},
					message: fmt.Sprintf("disk %d of VM %s cannot change from %d to %d bytes (shrinking is not supported)", d.key, lv.name, d.capacityBytes, want)}
			}
			if len(lv.snapshots) > 0 {
				return &vimFault{fault: &types.InvalidState{},
					message: fmt.Sprintf("disk %d of VM %s has snapshots and cannot be extended", d.key, lv.name)}
			}
			if err := d.resize(want); err != nil {
				return &vimFault{fault: &types.SystemError{Reason: err.Error()}, message: err.Error()}
			}
		}
	}
	return nil
}

func (l *lab) vmByRef(ref types.ManagedObjectReference) *labVm {
	for _, lv := range l.vms {
		if lv.ref == ref {
			return lv
		}
	}
	return nil
}

func (l *lab) serveQuery(w http.ResponseWriter, r *http.Request, body []byte, req *types.QueryChangedDiskAreas) {
	// vcsim checks the session and that the object exists; it then says the method does
	// not exist, which is the lab's cue to answer.
	rec := l.forward(r, body)
	if !bytes.Contains(rec.Body.Bytes(), []byte("MethodNotFoundFault")) {
		relay(w, rec)
		return
	}
	lv := l.vmByRef(req.This)
	if lv == nil {
		writeFault(w, &vimFault{fault: &types.NotSupported{}, message: fmt.Sprintf("%s is not a lab VM", req.This.Value)})
		return
	}
	if l.faults.queryFaultCount > 0 {
		l.faults.queryFaultCount--
		writeFault(w, injectedFault(l.faults.queryFault, lv, req))
		return
	}
	info, f := l.queryChangedDiskAreas(lv, req)
	if f != nil {
		writeFault(w, f)
		return
	}
	writeResponse(w, &types.QueryChangedDiskAreasResponse{Returnval: *info})
}

// serveConsolidate answers ConsolidateVMDisks_Task (vcsim lacks it) with a task that
// succeeds at once: the lab consolidates when a snapshot is removed, so nothing is left over.
func (l *lab) serveConsolidate(w http.ResponseWriter, r *http.Request, body []byte, ref types.ManagedObjectReference) {
	rec := l.forward(r, body)
	lv := l.vmByRef(ref)
	if !bytes.Contains(rec.Body.Bytes(), []byte("MethodNotFoundFault")) || lv == nil {
		relay(w, rec)
		return
	}
	task := simulator.CreateTask(lv.sim, "consolidateVMDisks", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		lv.setConsolidationNeeded(false)
		return nil, nil
	})
	writeResponse(w, &types.ConsolidateVMDisks_TaskResponse{Returnval: task.Run()})
}

// injectedFault builds the fault armed through POST /faults.
func injectedFault(kind string, lv *labVm, req *types.QueryChangedDiskAreas) *vimFault {
	msg := fmt.Sprintf("injected %s for QueryChangedDiskAreas on VM %s disk %d", kind, lv.name, req.DeviceKey)
	file := ""
	if d := lv.disk(req.DeviceKey); d != nil {
		file = d.datastorePath(d.live())
	}
	return faultOfKind(kind, msg, req.This, file)
}

// faultOfKind makes a fault of the named vSphere type; unknown names become SystemError.
func faultOfKind(kind, msg string, this types.ManagedObjectReference, file string) *vimFault {
	switch kind {
	case "FileFault":
		return &vimFault{fault: &types.FileFault{File: file}, message: msg}
	case "InvalidArgument":
		return &vimFault{fault: &types.InvalidArgument{}, message: msg}
	case "InvalidState":
		return &vimFault{fault: &types.InvalidState{}, message: msg}
	case "NotFound":
		return &vimFault{fault: &types.NotFound{}, message: msg}
	case "NotAuthenticated":
		return &vimFault{fault: &types.NotAuthenticated{NoPermission: types.NoPermission{Object: this, PrivilegeId: "System.View"}}, message: msg}
	case "TaskInProgress":
		return &vimFault{fault: &types.TaskInProgress{Task: this}, message: msg}
	case "SnapshotFault":
		return &vimFault{fault: &types.SnapshotFault{}, message: msg}
	case "DuplicateName":
		return &vimFault{fault: &types.DuplicateName{Name: msg, Object: this}, message: msg}
	case "NoDiskSpace":
		return &vimFault{fault: &types.NoDiskSpace{FileFault: types.FileFault{File: file}, Datastore: "LocalDS_0"}, message: msg}
	case "InsufficientResourcesFault":
		return &vimFault{fault: &types.InsufficientResourcesFault{}, message: msg}
	default:
		return &vimFault{fault: &types.SystemError{Reason: msg}, message: msg}
	}
}

// injectMethodFault fails an armed method call, for a logged-in caller: a *_Task method
// returns a task that ends in error (as ESXi reports most failures), any other method a
// SOAP fault. It reports whether it answered.
func (l *lab) injectMethodFault(w http.ResponseWriter, r *http.Request, body []byte) bool {
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return false
	}
	l.mu.Lock()
	armed := l.faults.methods[method.Name]
	if armed == nil || !l.sessions.valid(r) {
		l.mu.Unlock()
		return false
	}
	armed.count--
	if armed.count <= 0 {
		delete(l.faults.methods, method.Name)
	}
	l.mu.Unlock()
	f := faultOfKind(armed.kind, fmt.Sprintf("injected %s for %s on %s", armed.kind, method.Name, method.This.Value), method.This, "")
	if !strings.HasSuffix(method.Name, "_Task") {
		writeFault(w, f)
		return true
	}
	l.failedTask(w, method.This, method.Name, f)
	return true
}

// taskResponse is the reply of any *_Task method: the task's moref.
type taskResponse struct {
	XMLName   xml.Name
	Returnval types.ManagedObjectReference `xml:"returnval"`
}

// The envelope below mirrors how vcsim encodes its own replies (soapenv prefix, the four
// namespace declarations, detail/<Type>Fault with xmlns="urn:vim25" and xsi:type).
type envelope struct {
	XMLName xml.Name    `xml:"soapenv:Envelope"`
	Enc     string      `xml:"xmlns:soapenc,attr"`
	Env     string      `xml:"xmlns:soapenv,attr"`
	XSD     string      `xml:"xmlns:xsd,attr"`
	XSI     string      `xml:"xmlns:xsi,attr"`
	Body    interface{} `xml:"soapenv:Body"`
}

type faultBody struct {
	Fault struct {
		XMLName xml.Name `xml:"soapenv:Fault"`
		Code    string   `xml:"faultcode"`
		String  string   `xml:"faultstring"`
		Detail  struct {
			Fault *faultDetail
		} `xml:"detail"`
	}
}

type faultDetail struct{ fault types.BaseMethodFault }

func (d *faultDetail) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	kind := reflect.TypeOf(d.fault).Elem().Name()
	start.Name.Local = kind + "Fault"
	start.Attr = append(start.Attr,
		xml.Attr{Name: xml.Name{Local: "xmlns"}, Value: "urn:vim25"},
		xml.Attr{Name: xml.Name{Local: "xsi:type"}, Value: kind})
	return e.EncodeElement(d.fault, start)
}

type responseBody struct{ res interface{} }

func (b responseBody) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	name := reflect.TypeOf(b.res).Elem().Name()
	if t, ok := b.res.(*taskResponse); ok {
		name = t.XMLName.Local
	}
	if err := e.EncodeElement(b.res, xml.StartElement{Name: xml.Name{Space: "urn:vim25", Local: name}}); err != nil {
		return err
	}
	return e.EncodeToken(start.End())
}

func encodeEnvelope(body interface{}) []byte {
	var out bytes.Buffer
	out.WriteString(xml.Header)
	enc := xml.NewEncoder(&out)
	err := enc.Encode(&envelope{
		Enc: "http://schemas.xmlsoap.org/soap/encoding/", Env: "http://schemas.xmlsoap.org/soap/envelope/",
		XSD: "http://www.w3.org/2001/XMLSchema", XSI: "http://www.w3.org/2001/XMLSchema-instance",
		Body: body,
	})
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		log.Printf("vcbt-lab: encoding SOAP reply: %v", err)
	}
	return out.Bytes()
}

func writeFault(w http.ResponseWriter, f *vimFault) {
	var b faultBody
	b.Fault.Code = "ServerFaultCode"
	b.Fault.String = f.message
	b.Fault.Detail.Fault = &faultDetail{f.fault}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(encodeEnvelope(b))
}

func writeResponse(w http.ResponseWriter, res interface{}) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encodeEnvelope(responseBody{res}))
}
