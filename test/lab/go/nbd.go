package main

// NBD exports: the lab's stand-in for what nbdkit's vddk plugin gives a real user. Each
// export is a real nbdkit (file plugin) serving a state's file over a Unix socket, with a
// small TCP relay in front so clients get nbd://127.0.0.1:PORT and so the nbdCutAfterBytes
// fault can cut a connection after N bytes from server to client.

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
	conns    sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]bool
}

type exportSet struct {
	dir     string
	mu      sync.Mutex
	nextId  int
	exports map[string]*nbdExport
	// cutNext, when > 0, is consumed by the next accepted connection of any export.
	cutNext int64
}

func newExportSet(dir string) *exportSet {
	return &exportSet{dir: dir, exports: map[string]*nbdExport{}}
}

func (s *exportSet) armCut(bytes int64) { atomic.StoreInt64(&s.cutNext, bytes) }

// start serves file through nbdkit; readOnly exports refuse writes (nbdkit -r).
func (s *exportSet) start(file string, readOnly bool) (*nbdExport, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.nextId++
	id := fmt.Sprintf("nbd-%d", s.nextId)
	s.mu.Unlock()
	socket := filepath.Join(s.dir, id+".sock")
	args := []string{"-f", "--exit-with-parent", "-U", socket}
	if readOnly {
		args = append(args, "-r")
	}
	args = append(args, "file", "file="+file)
	cmd := exec.Command("nbdkit", args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nbdkit: %w", err)
	}
	e := &nbdExport{id: id, cmd: cmd, socket: socket, open: map[net.Conn]bool{}}
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
	s.mu.Lock()
	s.exports[id] = e
	s.mu.Unlock()
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
		cut := atomic.SwapInt64(&s.cutNext, 0)
		go e.relay(client, cut)
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

// relay copies both ways; with cutAfter > 0 it closes the client's connection once that
// many bytes went from the server to the client. nbdkit is always shut down gracefully
// (half-close, then drain its remaining replies): an abrupt close of its socket while
// replies are in flight can crash it.
func (e *nbdExport) relay(client net.Conn, cutAfter int64) {
	conn, err := net.Dial("unix", e.socket)
	if err != nil {
		_ = client.Close()
		return
	}
	server := conn.(*net.UnixConn)
	e.track(client, true)
	e.track(server, true)
	upDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(server, client)
		_ = server.CloseWrite()
		close(upDone)
	}()
	var down io.Reader = server
	if cutAfter > 0 {
		down = io.LimitReader(server, cutAfter)
	}
	_, _ = io.Copy(client, down)
	_ = client.Close()
	_, _ = io.Copy(io.Discard, server)
	<-upDone
	_ = server.Close()
	e.track(client, false)
	e.track(server, false)
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
}
