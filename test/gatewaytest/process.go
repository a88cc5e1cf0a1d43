package gatewaytest

import (
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"
)

// StartProcess starts a gateway (cmd, whose output the caller captures),
// waits until ready reports nil, and stops it when the test ends. If the
// process exits first, or is not ready within timeout, it is stopped and
// the error carries diagnostics() — which is also logged when the test
// fails. diagnostics is called only once the process has exited or been
// killed, so it may read the captured output without locking.
func StartProcess(t *testing.T, name string, cmd *exec.Cmd, timeout time.Duration, ready func() error, diagnostics func() string) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit", name, cmd.Process.Pid)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-exited:
			exited <- err // for stop, should it be called
			return fmt.Errorf("%s exited (%v) before it was ready:\n%s", name, err, diagnostics())
		default:
		}
		err := ready()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("%s was not ready within %v (%v):\n%s", name, timeout, err, diagnostics())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s:\n%s", name, diagnostics())
		}
	})
	return nil
}

// Listening is a ready check for StartProcess: addr accepts connections.
func Listening(addr string) func() error {
	return func() error {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}
}
