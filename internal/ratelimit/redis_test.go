package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyward/keyward/internal/testenv"
)

// hangGuard is how long any call may take against a Redis that is down or
// hung: far above the timeout, so that it fails on a hang, not on a slow
// machine.
const hangGuard = time.Second

func newRedis(t *testing.T, url string, opts ...RedisOption) *Redis {
	t.Helper()
	s, err := NewRedis(url, opts...)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Two key server replicas, each with its own Redis store on the same Redis,
// share one limit: 10 a minute, burst 10, is 10 across both.
func TestTwoRedisStoresShareOneLimitExactly(t *testing.T) {
	srv := testenv.StartRedis(t)
	replicas := []*Redis{newRedis(t, srv.URL), newRedis(t, srv.URL)}
	l := Limit{Requests: 10, Period: time.Minute, Burst: 10}
	for i := range 10 {
		r := allow(t, replicas[i%2], "team-a/key", l)
		if !r.Allowed || r.Remaining != 9-i {
			t.Fatalf("request %d (replica %d): %+v, want allowed with %d remaining", i+1, i%2, r, 9-i)
		}
	}
	for i, s := range replicas {
		r := allow(t, s, "team-a/key", l)
		if r.Allowed {
			t.Fatalf("replica %d allowed an 11th request: %+v", i, r)
		}
		if r.RetryAfter <= 5*time.Second || r.RetryAfter > 6*time.Second || r.ResetAfter <= 59*time.Second || r.ResetAfter > time.Minute {
			t.Fatalf("replica %d: retry after %v, reset after %v; want about 6s and 60s", i, r.RetryAfter, r.ResetAfter)
		}
	}
	if r := allow(t, replicas[1], "team-b/key", l); !r.Allowed || r.Remaining != 9 {
		t.Fatalf("another bucket: %+v, want its own budget", r)
	}
}

// Both stores run GCRA on the same numbers: the same requests get the same
// answers (times within what passes on Redis's clock during the test). Not
// for periods of many years: redis_rate computes in float seconds since
// 2017, whose rounding then exceeds the interval's last nanoseconds.
func TestRedisAndLocalStoresAnswerAlike(t *testing.T) {
	srv := testenv.StartRedis(t)
	rs := newRedis(t, srv.URL)
	local := NewLocal(clocktesting.NewFakePassiveClock(t0))
	limits := []Limit{
		{Requests: 5, Period: 5 * time.Hour},
		{Requests: 5, Period: 5 * time.Hour, Burst: 2},
		{Requests: 3, Period: time.Hour, Burst: 7},
		{Requests: 2, Period: 365 * 24 * time.Hour, Burst: 1},
	}
	for i, l := range limits {
		name := "alike/" + string(rune('a'+i))
		for n := range 10 {
			want := allow(t, local, name, l)
			got := allow(t, rs, name, l)
			if got.Allowed != want.Allowed || got.Remaining != want.Remaining ||
				(got.RetryAfter-want.RetryAfter).Abs() > time.Second || (got.ResetAfter-want.ResetAfter).Abs() > time.Second {
				t.Fatalf("limit %+v, request %d: Redis %+v, local %+v", l, n+1, got, want)
			}
		}
	}
}

func TestRedisKeysHaveOnePrefixAndLengthAndExpire(t *testing.T) {
	srv := testenv.StartRedis(t)
	rs := newRedis(t, srv.URL)
	long := strings.Repeat("n", 1<<20)
	l := Limit{Requests: 1, Period: time.Hour}
	for _, name := range []string{"team-a/key", long, long + "x"} {
		if r := allow(t, rs, name, l); !r.Allowed {
			t.Fatalf("a new bucket refused: %+v", r)
		}
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	keys, err := admin.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("keys %v, want one per bucket (3)", keys)
	}
	sum := sha256.Sum256([]byte("team-a/key"))
	for _, k := range keys {
		if !strings.HasPrefix(k, "rate:"+RedisKeyPrefix) || len(k) != len("rate:"+RedisKeyPrefix)+64 {
			t.Errorf("key %.80q: want rate:%s and 64 hex digits", k, RedisKeyPrefix)
		}
		ttl := admin.TTL(context.Background(), k).Val()
		if ttl <= 0 || ttl > time.Hour {
			t.Errorf("key %.80q expires in %v, want within the hour its TAT passes", k, ttl)
		}
	}
	if admin.Exists(context.Background(), "rate:"+RedisKeyPrefix+hex.EncodeToString(sum[:])).Val() != 1 {
		t.Error("no key for team-a/key under its SHA-256")
	}
}

func TestNewRedisTakesRedisAndRedissURLsOnly(t *testing.T) {
	for url, wantErr := range map[string]bool{
		"redis://keyward-redis.keyward-system.svc:6379":      false,
		"redis://127.0.0.1:1/3":                              false,
		"rediss://user:pass@redis.example:6380/0":            false,
		"rediss://redis.example":                             false,
		"unix:///var/run/redis.sock":                         true,
		"http://redis.example:6379":                          true,
		"redis://h:6379/notadb":                              true,
		"keyward-redis:6379":                                 true,
		"":                                                   true,
		"redis://h:6379/0?dial_timeout=notaduration":         true,
		"redis://h:6379/0?max_retries=3&read_timeout=1h":     false, // ours win: see below
		"redis://h:6379/0?unknown_parameter=that+go+refuses": true,
	} {
		s, err := NewRedis(url)
		if (err != nil) != wantErr {
			t.Errorf("NewRedis(%q): error %v, want error %v", url, err, wantErr)
			continue
		}
		if err != nil {
			continue
		}
		o := s.client.Options()
		if o.ReadTimeout != DefaultRedisTimeout || o.MaxRetries > 0 || o.DialerRetries != 1 || !o.ContextTimeoutEnabled {
			t.Errorf("NewRedis(%q): read timeout %v, retries %d, dial attempts %d, context timeouts %v: a call could wait past the timeout",
				url, o.ReadTimeout, o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled)
		}
		if strings.HasPrefix(url, "rediss:") != (o.TLSConfig != nil) {
			t.Errorf("NewRedis(%q): TLS %v", url, o.TLSConfig != nil)
		}
		_ = s.Close()
	}
}

// Attack 4: the Redis URL may carry a password, and the store's errors end
// up in logs and Warning events: no error or string of the store may hold
// it, whether the URL is malformed or Redis refuses or is unreachable.
func TestAttack4TheRedisPasswordIsInNoErrorOrString(t *testing.T) {
	const secret = "s3cr3t-pa55"
	for _, url := range []string{
		"redis://user:" + secret + "@h:6379/notadb",
		"redis://user:" + secret + "@h:notaport/0",
		"redis://user:" + secret + "@h:6379/0?bogus=1",
		"redis://user:" + secret + "@h o s t:6379/0",
		"redis://user:" + secret + "@h:6379/0\x7f",
		"http://user:" + secret + "@h:6379/0",
	} {
		if _, err := NewRedis(url); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("NewRedis of a malformed URL with a password: %v", err)
		}
	}
	var logs syncLog
	SetRedisLogger(funcr.New(logs.add, funcr.Options{Verbosity: 1}))
	t.Cleanup(func() { SetRedisLogger(logr.Discard()) })
	dead := deadAddr(t)
	s := newRedis(t, "redis://user:"+secret+"@"+dead+"/0")
	if strings.Contains(s.String(), secret) {
		t.Errorf("String() = %q", s.String())
	}
	_, err := s.Allow(context.Background(), "b", Limit{Requests: 1, Period: time.Second})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Allow on an unreachable Redis: %v", err)
	}
	if err := s.Ping(context.Background()); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Ping on an unreachable Redis: %v", err)
	}
	if logged := logs.String(); !strings.Contains(logged, dead) || strings.Contains(logged, secret) {
		t.Errorf("go-redis's log lines: %q; want the failed dial to %s, without the password", logged, dead)
	}
	// A Redis that refuses the password.
	srv := testenv.StartRedis(t)
	s = newRedis(t, strings.Replace(srv.URL, "redis://", "redis://user:"+secret+"@", 1))
	if _, err := s.Allow(context.Background(), "b", Limit{Requests: 1, Period: time.Second}); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Allow with a password Redis refuses: %v", err)
	}
}

// Attack 5: a Redis that accepts connections but never answers (hung, or
// a black hole on the path) must not hold requests: every call returns,
// with an error, within the timeout.
func TestAttack5AHungRedisHoldsNoRequestPastTheTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() }) // read nothing, answer nothing
		}
	}()
	s := newRedis(t, "redis://"+l.Addr().String()+"/0", Timeout(50*time.Millisecond))
	for i := range 5 {
		start := time.Now()
		_, err := s.Allow(context.Background(), "b", Limit{Requests: 1, Period: time.Second})
		if took := time.Since(start); err == nil || took > hangGuard {
			t.Fatalf("call %d on a hung Redis: %v after %v, want an error within %v", i+1, err, took, hangGuard)
		}
	}
}

type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(prefix + args + "\n")
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// deadAddr is an address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// Limits beyond any sensible one reach Redis clamped as the local store
// clamps them: answers, not errors (an expiry too large for Redis, say).
func TestRedisTakesExtremeLimits(t *testing.T) {
	srv := testenv.StartRedis(t)
	rs := newRedis(t, srv.URL)
	for name, l := range map[string]Limit{
		"one request in the longest period":         {Requests: 1, Period: 1<<63 - 1},
		"the largest burst over the longest period": {Requests: 1, Period: 1<<63 - 1, Burst: 1<<63 - 1},
		"more requests than nanoseconds":            {Requests: 1<<63 - 1, Period: time.Second},
	} {
		for range 3 {
			if _, err := rs.Allow(context.Background(), name, l); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
}

// Redis stopped mid-test: each failure mode answers by itself, quickly, the
// outage is counted and reported once; Redis back (empty, as a Redis without
// persistence restarts): counting again.
func TestGuardedRedisStoppedMidTestAndRestarted(t *testing.T) {
	srv := testenv.StartRedis(t)
	clk := clocktesting.NewFakePassiveClock(t0)
	l := Limit{Requests: 10, Period: time.Minute, Burst: 10}
	type replica struct {
		mode  FailureMode
		guard *Guard
		tr    *transitions
	}
	var replicas []replica
	for _, mode := range []FailureMode{FailOpen, FailClosed} {
		tr := &transitions{}
		g := NewGuard(newRedis(t, srv.URL), GuardOptions{Mode: mode, Clock: clk, OnTransition: tr.record})
		replicas = append(replicas, replica{mode, g, tr})
	}
	timed := func(g *Guard, bucket string) Result {
		t.Helper()
		start := time.Now()
		r := allow(t, g, bucket, l)
		if took := time.Since(start); took > hangGuard {
			t.Fatalf("a call took %v", took)
		}
		return r
	}
	// The two replicas share the limit.
	for i := range 10 {
		if r := timed(replicas[i%2].guard, "k"); !r.Allowed || r.Unchecked {
			t.Fatalf("request %d: %+v", i+1, r)
		}
	}
	for _, rp := range replicas {
		if r := timed(rp.guard, "k"); r.Allowed || r.Unchecked {
			t.Fatalf("%s: an 11th request: %+v, want refused by the count", rp.mode, r)
		}
	}

	errs0 := testutil.ToFloat64(storeErrors)
	srv.Stop()
	for _, rp := range replicas {
		for i := range 20 {
			r := timed(rp.guard, "k")
			if !r.Unchecked || r.Allowed != (rp.mode == FailOpen) {
				t.Fatalf("%s, Redis stopped, request %d: %+v", rp.mode, i+1, r)
			}
		}
		if got := rp.tr.list(); len(got) != 1 || got[0] {
			t.Fatalf("%s: transitions %v, want one: unavailable", rp.mode, got)
		}
		if err := rp.tr.err[0]; err == nil || !strings.Contains(err.Error(), srv.Addr) {
			t.Fatalf("%s: unavailable with %v, want the error naming Redis", rp.mode, err)
		}
	}
	if d := testutil.ToFloat64(storeErrors) - errs0; d != 2*DefaultFailuresToDown {
		t.Fatalf("%v store errors counted, want %d per replica (the failures that took it down)", d, DefaultFailuresToDown)
	}
	if testutil.ToFloat64(storeUp) != 0 {
		t.Fatal("keyward_rate_limit_store_up is not 0 with Redis stopped")
	}

	srv.Start()
	// Each replica tries Redis again once per probe interval; a connection
	// the restart broke may fail one more probe.
	for _, rp := range replicas {
		for probe := 0; !rp.guard.Available(); probe++ {
			if probe == 5 {
				t.Fatalf("%s: Redis back, still unavailable after %d probes", rp.mode, probe)
			}
			clk.SetTime(clk.Now().Add(DefaultProbeInterval))
			timed(rp.guard, "other")
		}
		if got := rp.tr.list(); len(got) != 2 || !got[1] {
			t.Fatalf("%s: transitions %v, want unavailable, then available", rp.mode, got)
		}
	}
	if testutil.ToFloat64(storeUp) != 1 {
		t.Fatal("keyward_rate_limit_store_up is not 1 with Redis back")
	}
	for i := range 10 {
		if r := timed(replicas[i%2].guard, "k"); !r.Allowed || r.Unchecked {
			t.Fatalf("Redis back, request %d: %+v, want counted and allowed", i+1, r)
		}
	}
	for _, rp := range replicas {
		if r := timed(rp.guard, "k"); r.Allowed || r.Unchecked {
			t.Fatalf("Redis back, %s: an 11th request: %+v, want refused by the count", rp.mode, r)
		}
	}
}

// Redis frozen (its port accepts, nothing answers): the request that finds
// out waits at most the timeout, the others of the probe interval not at
// all; thawed, counting resumes where it was - a timed-out request may have
// been counted after all, as its command was sent.
func TestGuardedRedisFrozenHoldsNoRequest(t *testing.T) {
	srv := testenv.StartRedis(t)
	clk := clocktesting.NewFakePassiveClock(t0)
	tr := &transitions{}
	g := NewGuard(newRedis(t, srv.URL), GuardOptions{Mode: FailClosed, Clock: clk, OnTransition: tr.record})
	l := Limit{Requests: 3, Period: time.Hour}
	allow(t, g, "k", l)
	srv.Freeze()
	t.Cleanup(srv.Thaw) // before Stop, at the latest
	var slowest time.Duration
	for i := range 50 {
		start := time.Now()
		r := allow(t, g, "k", l)
		took := time.Since(start)
		if took > hangGuard || r.Allowed || !r.Unchecked || r.RetryAfter != DefaultClosedRetryAfter {
			t.Fatalf("Redis frozen, request %d: %+v after %v", i+1, r, took)
		}
		slowest = max(slowest, took)
	}
	t.Logf("Redis frozen: the slowest of 50 requests took %v (timeout %v)", slowest, DefaultRedisTimeout)
	if got := tr.list(); len(got) != 1 || got[0] {
		t.Fatalf("transitions %v, want one: unavailable", got)
	}
	srv.Thaw()
	for probe := 0; !g.Available(); probe++ {
		if probe == 5 {
			t.Fatalf("Redis thawed, still unavailable after %d probes", probe)
		}
		clk.SetTime(clk.Now().Add(DefaultProbeInterval))
		allow(t, g, "other", l)
	}
	left := 0
	for {
		r := allow(t, g, "k", l)
		if r.Unchecked {
			t.Fatalf("thawed: %+v", r)
		}
		if !r.Allowed {
			break
		}
		left++
	}
	if left < 1 || left > 2 {
		t.Fatalf("thawed: %d more allowed, want what was left of 3 (2, or 1 if the timed-out request was counted)", left)
	}
}
