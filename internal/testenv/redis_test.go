package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

func TestStartRedisStartsAServerThatStopsAndStartsAgain(t *testing.T) {
	r := StartRedis(t)
	if err := ping(r.Addr); err != nil {
		t.Fatalf("started, but PING: %v", err)
	}
	if !strings.HasPrefix(r.URL, "redis://127.0.0.1:") {
		t.Fatalf("URL %q", r.URL)
	}
	r.Stop()
	if err := ping(r.Addr); err == nil {
		t.Fatal("stopped, but still answering PING")
	}
	r.Stop() // again: nothing
	r.Start()
	r.Freeze()
	if err := ping(r.Addr); err == nil {
		t.Fatal("frozen, but answering PING")
	}
	r.Thaw()
	if err := ping(r.Addr); err != nil {
		t.Fatalf("thawed, but PING: %v", err)
	}
	r.Freeze()
	r.Stop() // a frozen server stops too
	r.Start()
	if err := ping(r.Addr); err != nil {
		t.Fatalf("started again, but PING: %v", err)
	}
}

// recorder is a testing.TB that records Fatal and Skip instead of ending
// the test, to check what StartRedis does without a binary.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Fatal(args ...any) { r.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Skip(args ...any)  { r.skip = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartRedisWithoutTheBinaryFailsInCIAndSkipsElsewhere(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := redisServerPaths
	redisServerPaths = nil
	t.Cleanup(func() { redisServerPaths = old })

	for ci, want := range map[string]func(*recorder) bool{
		"true": func(r *recorder) bool {
			return strings.Contains(r.fatal, "CI must run .ci/install-redis.sh") && r.skip == ""
		},
		"": func(r *recorder) bool {
			return r.fatal == "" && strings.Contains(r.skip, "redis-server is not installed")
		},
	} {
		t.Setenv("CI", ci)
		rec := &recorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); StartRedis(rec) }()
		<-done
		if !want(rec) {
			t.Errorf("CI=%q: Fatal %q, Skip %q", ci, rec.fatal, rec.skip)
		}
	}
}
