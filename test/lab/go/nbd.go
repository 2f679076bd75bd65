package main

// NBD exports: the lab's stand-in for what nbdkit's vddk plugin gives a real user. Each
// export is a real nbdkit (file plugin) serving a state's file over a Unix socket, with a
// small TCP relay in front so clients get nbd://127.0.0.1:PORT and so the nbdCutAfterBytes
// fault can cut a connection after N bytes from server to client. The named endpoint
// (nbd_named.go) is one more such export whose relay also rewrites export names.

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type nbdExport struct {
	id       string
	cmd      *exec.Cmd
	listener net.Listener
	socket   string
	// handshake, when set, speaks the option phase between client and nbdkit before the
	// relay steps aside; it returns the bytes it sent to the client and the export name.
	handshake func(client, server net.Conn) (int64, string, error)
	// writes, when set (writable exports of live disks, nbd_live.go), starts the tracking
	// of one connection's write requests; nil refuses the connection.
	writes func(exportName string) *writeSession
	mu     sync.Mutex
	open   map[net.Conn]bool
}

type exportSet struct {
	dir     string
	mu      sync.Mutex
	nextId  int
	exports map[string]*nbdExport
	cut     cutFault
	// named is the endpoint that serves snapshot disks by export name (nbd_named.go).
	named *nbdExport
	// live is the writable endpoint serving powered-off VMs' live disks (nbd_live.go).
	live *nbdExport
}

// cutFault is the armed nbdCutAfterBytes fault. A connection accepted while it is armed
// with N is eligible; the first eligible connection that is about to send more than N bytes
// to its client claims it (disarming it), sends exactly N and is closed. Connections that
// stay at or below N (a size probe, say) leave it armed.
type cutFault struct{ armedBytes int64 }

func (c *cutFault) arm(bytes int64) { atomic.StoreInt64(&c.armedBytes, bytes) }

func (c *cutFault) armed() int64 { return atomic.LoadInt64(&c.armedBytes) }

func (c *cutFault) claim(bytes int64) bool {
	return atomic.CompareAndSwapInt64(&c.armedBytes, bytes, 0)
}

// copyDown copies server to client; cutAfter > 0 makes the connection eligible for the cut
// fault. It reports whether it cut the connection.
// sent counts what the connection already sent to the client (a handshake).
func copyDown(client io.Writer, server io.Reader, cutAfter, sent int64, cut *cutFault) bool {
	buf := make([]byte, 256*1024)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if cutAfter > 0 && sent+int64(n) > cutAfter {
				if cut.claim(cutAfter) {
					if sent < cutAfter {
						_, _ = client.Write(buf[:cutAfter-sent])
					}
					return true
				}
				cutAfter = 0
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return false
			}
			sent += int64(n)
		}
		if err != nil {
			return false
		}
	}
}

func newExportSet(dir string) *exportSet {
	return &exportSet{dir: dir, exports: map[string]*nbdExport{}}
}

// start serves file through nbdkit; readOnly exports refuse writes (nbdkit -r).
func (s *exportSet) start(file string, readOnly bool) (*nbdExport, error) {
	s.mu.Lock()
	s.nextId++
	id := fmt.Sprintf("nbd-%d", s.nextId)
	s.mu.Unlock()
	e, err := s.launch(id, readOnly, nil, "file", "file="+file)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.exports[id] = e
	s.mu.Unlock()
	return e, nil
}

// launch runs nbdkit with the plugin arguments on a Unix socket and a TCP relay in front.
func (s *exportSet) launch(id string, readOnly bool, handshake func(client, server net.Conn) (int64, string, error), plugin ...string) (*nbdExport, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	socket := filepath.Join(s.dir, id+".sock")
	args := []string{"-f", "--exit-with-parent", "-U", socket}
	if readOnly {
		args = append(args, "-r")
	}
	args = append(args, plugin...)
	cmd := exec.Command("nbdkit", args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nbdkit: %w", err)
	}
	e := &nbdExport{id: id, cmd: cmd, socket: socket, handshake: handshake, open: map[net.Conn]bool{}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", socket)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("nbdkit did not listen on %s: %w", socket, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	e.listener = ln
	go s.accept(e)
	return e, nil
}

func (e *nbdExport) uri() string {
	return "nbd://" + e.listener.Addr().String()
}

func (s *exportSet) accept(e *nbdExport) {
	for {
		client, err := e.listener.Accept()
		if err != nil {
			return
		}
		go e.relay(client, s.cut.armed(), &s.cut)
	}
}

func (e *nbdExport) track(c net.Conn, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.open[c] = true
	} else {
		delete(e.open, c)
	}
}

// relay copies both ways; with cutAfter > 0 the connection is eligible for the cut fault
// (see cutFault). nbdkit is always shut down gracefully
// (half-close, then drain its remaining replies): an abrupt close of its socket while
// replies are in flight can crash it.
func (e *nbdExport) relay(client net.Conn, cutAfter int64, cut *cutFault) {
	conn, err := net.Dial("unix", e.socket)
	if err != nil {
		_ = client.Close()
		return
	}
	server := conn.(*net.UnixConn)
	e.track(client, true)
	e.track(server, true)
	defer func() {
		e.track(client, false)
		e.track(server, false)
	}()
	var sent int64
	exportName := ""
	abandon := func() {
		_ = client.Close()
		_ = server.CloseWrite()
		_, _ = io.Copy(io.Discard, server)
		_ = server.Close()
	}
	if e.handshake != nil {
		if sent, exportName, err = e.handshake(client, server); err != nil {
			abandon()
			return
		}
	}
	var session *writeSession
	if e.writes != nil {
		if session = e.writes(exportName); session == nil {
			abandon()
			return
		}
		defer session.done()
	}
	upDone := make(chan struct{})
	go func() {
		if session != nil {
			copyUpTracked(server, client, session)
		} else {
			_, _ = io.Copy(server, client)
		}
		_ = server.CloseWrite()
		close(upDone)
	}()
	copyDown(client, server, cutAfter, sent, cut)
	_ = client.Close()
	_, _ = io.Copy(io.Discard, server)
	<-upDone
	_ = server.Close()
}

func (s *exportSet) close(id string) bool {
	s.mu.Lock()
	e, ok := s.exports[id]
	delete(s.exports, id)
	s.mu.Unlock()
	if !ok {
		return false
	}
	e.stop()
	return true
}

func (e *nbdExport) stop() {
	_ = e.listener.Close()
	e.mu.Lock()
	for c := range e.open {
		_ = c.Close()
	}
	e.mu.Unlock()
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
	waited := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	}
	_ = os.Remove(e.socket)
}

func (s *exportSet) closeAll() {
	s.mu.Lock()
	var ids []string
	for id := range s.exports {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.close(id)
	}
	if s.named != nil {
		s.named.stop()
	}
	if s.live != nil {
		s.live.stop()
	}
}
