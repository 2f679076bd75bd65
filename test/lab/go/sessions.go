package main

// Sessions as vCenter ends them, on demand:
//
//   - POST /sessions/expire ends every logged-in session at once, as if vCenter's idle
//     timeout had passed (or vCenter restarted), so tests of re-login need no waiting.
//   - The armed fault expireSessionsBeforeCall=N does the same just before the N-th SOAP
//     request from a client arrives (counted from when it was armed), so a test can end the
//     session in front of any one call of a job.
//   - A property read (RetrievePropertiesEx, RetrieveProperties) with the cookie of an ended
//     session is answered as vCenter answers it: HTTP 200 and, for every object asked for,
//     a missingSet entry per property whose fault is NotAuthenticated - not a SOAP fault.
//     Every other method of an ended session gets vcsim's SOAP NotAuthenticated fault.
//   - GET /soap-calls lists the SOAP methods clients called (DELETE /soap-calls clears the
//     list), so a test can learn a job's call sequence from a clean run.
//
// The lab ends sessions by logging in itself through the real API and calling
// TerminateSession; its own requests carry labUserAgent and are neither counted nor logged.

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// labUserAgent marks the lab's own SOAP requests (session expiry), which tests never see.
const labUserAgent = "vcbt-lab-internal"

// soapCallLogMax bounds the call log; a job makes tens of calls.
const soapCallLogMax = 100000

// soapCalls is the log behind GET /soap-calls and the counter behind expireSessionsBeforeCall.
type soapCalls struct {
	mu      sync.Mutex
	methods []string
	// expireBefore > 0: sessions end just before the expireBefore-th request from now.
	expireBefore int
	seen         int
}

func (c *soapCalls) arm(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireBefore, c.seen = n, 0
}

func (c *soapCalls) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expireBefore == 0 {
		return 0
	}
	return c.expireBefore - c.seen
}

// record logs one client request and reports whether sessions must end before it is served.
func (c *soapCalls) record(method string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.methods) < soapCallLogMax {
		c.methods = append(c.methods, method)
	}
	if c.expireBefore == 0 {
		return false
	}
	c.seen++
	if c.seen < c.expireBefore {
		return false
	}
	c.expireBefore, c.seen = 0, 0
	return true
}

func (c *soapCalls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string{}, c.methods...)
}

func (c *soapCalls) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.methods = nil
}

// soapMethodName is the name of the first element inside the SOAP Body ("" if none).
func soapMethodName(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if start, ok := tok.(xml.StartElement); ok {
			if inBody {
				return start.Name.Local
			}
			inBody = start.Name.Local == "Body"
		}
	}
}

func (l *lab) expireSessions() (int, error) {
	ctx := context.Background()
	u := *l.server.URL
	sc := soap.NewClient(&u, true)
	sc.UserAgent = labUserAgent
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return 0, err
	}
	client := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := client.Login(ctx, url.UserPassword(l.info.Username, l.info.Password)); err != nil {
		return 0, err
	}
	defer func() { _ = client.Logout(ctx) }()
	var sm mo.SessionManager
	pc := property.DefaultCollector(client.Client)
	if err := pc.RetrieveOne(ctx, *client.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		return 0, err
	}
	var ids []string
	for _, s := range sm.SessionList {
		if sm.CurrentSession == nil || s.Key != sm.CurrentSession.Key {
			ids = append(ids, s.Key)
		}
	}
	if len(ids) > 0 {
		if err := client.SessionManager.TerminateSession(ctx, ids); err != nil {
			return 0, err
		}
	}
	l.sessions.forgetAll()
	return len(ids), nil
}

// endedSession reports whether the request carries the cookie of a session that no longer
// exists (a request without a cookie has never logged in: vcsim answers it as it is).
func (l *lab) endedSession(r *http.Request) bool {
	cookie, err := r.Cookie("vmware_soap_session")
	return err == nil && cookie.Value != "" && !l.sessions.valid(r)
}

// serveEndedSessionRead answers a property read of an ended session the way vCenter does
// (see the file comment). It reports whether it answered.
func (l *lab) serveEndedSessionRead(w http.ResponseWriter, method string, body []byte) bool {
	if method != "RetrievePropertiesEx" && method != "RetrieveProperties" {
		return false
	}
	parsed, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return false
	}
	var specs []types.PropertyFilterSpec
	switch req := parsed.Body.(type) {
	case *types.RetrievePropertiesEx:
		specs = req.SpecSet
	case *types.RetrieveProperties:
		specs = req.SpecSet
	default:
		return false
	}
	var objects strings.Builder
	for _, spec := range specs {
		for _, o := range spec.ObjectSet {
			objects.WriteString("<objects>" + refXml("obj", o.Obj))
			for _, p := range spec.PropSet {
				for _, path := range p.PathSet {
					objects.WriteString("<missingSet><path>" + xmlText(path) + "</path><fault><fault xsi:type=\"NotAuthenticated\">" +
						refXml("object", o.Obj) + "<privilegeId>System.View</privilegeId></fault><localizedMessage></localizedMessage></fault></missingSet>")
				}
			}
			objects.WriteString("</objects>")
		}
	}
	var result string
	if method == "RetrievePropertiesEx" {
		result = "<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>" + objects.String() + "</returnval></RetrievePropertiesExResponse>"
	} else {
		// RetrieveProperties returns the ObjectContents themselves as returnval elements.
		result = "<RetrievePropertiesResponse xmlns=\"urn:vim25\">" +
			strings.ReplaceAll(strings.ReplaceAll(objects.String(), "<objects>", "<returnval>"), "</objects>", "</returnval>") +
			"</RetrievePropertiesResponse>"
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "%s<soapenv:Envelope xmlns:soapenc=\"http://schemas.xmlsoap.org/soap/encoding/\" xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>%s</soapenv:Body></soapenv:Envelope>", xml.Header, result)
	return true
}

func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func refXml(name string, ref types.ManagedObjectReference) string {
	return "<" + name + " type=\"" + xmlText(ref.Type) + "\">" + xmlText(ref.Value) + "</" + name + ">"
}
