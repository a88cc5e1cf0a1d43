package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisServerPaths are where redis-server is looked for after PATH:
// Debian's package puts it in /usr/bin.
var redisServerPaths = []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"}

// redisStartTimeout bounds how long a redis-server may take to answer PING.
const redisStartTimeout = 10 * time.Second

// RedisServer is a real redis-server a test started: on 127.0.0.1, a port
// of its own, no persistence (nothing written to disk, every start empty).
// It is stopped when the test ends; Stop and Start let a test take it away
// and bring it back mid-test, on the same address.
type RedisServer struct {
	// URL is the server's redis:// URL, for the Redis store.
	URL string
	// Addr is its host:port.
	Addr string

	t    testing.TB
	bin  string
	port int
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

// StartRedis starts a redis-server for t. Without the binary the test
// skips, except in CI (CI=true), where it fails: CI must install the
// redis-server package (.ci/install-redis.sh).
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin := findRedisServer()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH (nor in /usr/bin or /usr/local/bin); CI must run .ci/install-redis.sh (Debian's redis-server package) before the tests")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server); skipping the test against a real Redis")
	}
	r := &RedisServer{t: t, bin: bin, port: freePort(t), dir: t.TempDir()}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	r.URL = "redis://" + r.Addr + "/0"
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", r.output())
		}
	})
	r.Start()
	return r
}

// Start starts the server again after Stop, on the same address and empty
// (as a Redis without persistence restarts); it fails the test if the
// server is not answering PING within 10 seconds. Starting a running
// server does nothing.
func (r *RedisServer) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	r.out = &syncBuffer{}
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--daemonize", "no",
		"--logfile", "",
	)
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting %s: %v", r.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited

	deadline := time.Now().Add(redisStartTimeout)
	for {
		err := ping(r.Addr)
		if err == nil {
			return
		}
		select {
		case <-exited:
			r.cmd = nil
			r.t.Fatalf("redis-server exited before it answered PING on %s:\n%s", r.Addr, r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			r.stopLocked()
			r.t.Fatalf("redis-server did not answer PING on %s within %v (%v):\n%s", r.Addr, redisStartTimeout, err, r.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would: no goodbye to clients) and waits
// until it has exited. Stopping a stopped server does nothing.
func (r *RedisServer) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

// Freeze stops the server's process (SIGSTOP) without closing anything: its
// port still accepts connections, but no command is answered, as with a
// hung Redis or a black hole on the path. Thaw resumes it.
func (r *RedisServer) Freeze() { r.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (r *RedisServer) Thaw() { r.signal(syscall.SIGCONT) }

func (r *RedisServer) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		r.t.Fatalf("redis-server is not running")
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signalling redis-server: %v", err)
	}
}

func (r *RedisServer) stopLocked() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill() // SIGKILL ends a frozen process too
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.t.Errorf("redis-server (pid %d) did not exit", r.cmd.Process.Pid)
	}
	r.cmd = nil
}

func (r *RedisServer) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out == nil {
		return ""
	}
	return r.out.String()
}

func findRedisServer() string {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	for _, p := range redisServerPaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// ping sends PING in Redis's inline protocol and wants +PONG: the server is
// not only listening but answering commands.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort is a TCP port free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
