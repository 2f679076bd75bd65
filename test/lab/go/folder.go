package main

// Datastore file access (/folder) as ESXi guards it: a valid vmware_soap_session cookie (or
// HTTP Basic credentials) is required, otherwise 401. The armed httpCutAfterBytes fault cuts
// the connection of the first GET response longer than N body bytes after exactly N bytes.

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"time"
)

const sessionCacheTtl = 5 * time.Second

type sessionCache struct {
	l    *lab
	mu   sync.Mutex
	seen map[string]time.Time // cookie value -> when vcsim last accepted it
}

func newSessionCache(l *lab) *sessionCache {
	return &sessionCache{l: l, seen: map[string]time.Time{}}
}

// valid asks vcsim (in-process, a cheap CurrentTime call) whether the request's session
// cookie belongs to a logged-in session; answers are cached briefly.
func (c *sessionCache) valid(r *http.Request) bool {
	cookie, err := r.Cookie("vmware_soap_session")
	if err != nil || cookie.Value == "" {
		return false
	}
	c.mu.Lock()
	at, ok := c.seen[cookie.Value]
	c.mu.Unlock()
	if ok && time.Since(at) < sessionCacheTtl {
		return true
	}
	body := []byte(`<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime></soapenv:Body></soapenv:Envelope>`)
	req, _ := http.NewRequest(http.MethodPost, "/sdk", bytes.NewReader(body))
	req.AddCookie(&http.Cookie{Name: "vmware_soap_session", Value: cookie.Value})
	rec := c.l.forward(req, body)
	if rec.Code != http.StatusOK {
		return false
	}
	c.mu.Lock()
	c.seen[cookie.Value] = time.Now()
	c.mu.Unlock()
	return true
}

func (c *sessionCache) forgetAll() {
	c.mu.Lock()
	c.seen = map[string]time.Time{}
	c.mu.Unlock()
}

func (l *lab) serveFolder(w http.ResponseWriter, r *http.Request) {
	user, pass, basic := r.BasicAuth()
	if !(basic && user == l.info.Username && pass == l.info.Password) && !l.sessions.valid(r) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("401 Unauthorized: log in through /sdk and send the vmware_soap_session cookie\n"))
		return
	}
	l.mu.Lock()
	cut := l.faults.httpCutAfterBytes
	stall := l.faults.httpStallCount > 0
	stallAfter := l.faults.httpStallAfterBytes
	l.mu.Unlock()
	if stall && r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/") {
		sw := &stallingWriter{ResponseWriter: w, remaining: stallAfter, claim: l.claimHttpStall}
		l.vcsim.ServeHTTP(sw, r)
		if sw.stalled {
			// Send nothing more and hold the connection until the client gives up.
			<-r.Context().Done()
		}
		return
	}
	if r.Method != http.MethodGet || cut <= 0 || strings.HasSuffix(r.URL.Path, "/") {
		l.vcsim.ServeHTTP(w, r)
		return
	}
	cw := &cuttingWriter{ResponseWriter: w, remaining: cut, claim: func() bool { return l.claimHttpCut(cut) }}
	l.vcsim.ServeHTTP(cw, r)
	if cw.cut {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
	}
}

// claimHttpStall takes one of the armed stalls for a response about to pass its bytes.
func (l *lab) claimHttpStall() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.faults.httpStallCount <= 0 {
		return false
	}
	l.faults.httpStallCount--
	return true
}

// stallingWriter passes a response until it is about to exceed `remaining` body bytes; then,
// if it wins one armed stall, it writes exactly that many, flushes, and swallows the rest
// (the handler then holds the connection open without a byte more).
type stallingWriter struct {
	http.ResponseWriter
	remaining int64
	claim     func() bool
	passing   bool
	stalled   bool
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	if s.stalled {
		return len(p), nil
	}
	if s.passing || int64(len(p)) <= s.remaining {
		s.remaining -= int64(len(p))
		return s.ResponseWriter.Write(p)
	}
	if !s.claim() {
		s.passing = true
		return s.ResponseWriter.Write(p)
	}
	_, _ = s.ResponseWriter.Write(p[:s.remaining])
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	s.stalled = true
	s.remaining = 0
	return len(p), nil
}

// claimHttpCut disarms the httpCutAfterBytes fault for the response that is about to pass
// its N bytes, unless another response claimed it first.
func (l *lab) claimHttpCut(bytes int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.faults.httpCutAfterBytes != bytes {
		return false
	}
	l.faults.httpCutAfterBytes = 0
	return true
}

// cuttingWriter passes a response through until it is about to exceed `remaining` body
// bytes; then, if it wins the armed fault (claim), it writes up to exactly that many bytes,
// swallows the rest and marks the response for a hard connection close. A shorter response
// (a descriptor, say) passes untouched and leaves the fault armed for the next one.
type cuttingWriter struct {
	http.ResponseWriter
	remaining int64
	claim     func() bool
	passing   bool // lost the claim: write everything
	cut       bool
}

func (c *cuttingWriter) Write(p []byte) (int, error) {
	if c.cut {
		return len(p), nil
	}
	if c.passing || int64(len(p)) <= c.remaining {
		c.remaining -= int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	if !c.claim() {
		c.passing = true
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.remaining])
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	c.cut = true
	c.remaining = 0
	return len(p), nil
}
