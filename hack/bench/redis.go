package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/ratelimit"
)

// The Redis round trip (figure 7): what the Redis rate-limit store pays on
// every request, a request and its answer over loopback to a redis-server
// this bench starts (the Debian package; not measured when it is not
// installed): PING, the smallest command, and the store's own call (GCRA
// in one script).
const (
	redisPings     = 20_000
	redisStartWait = 10 * time.Second
)

// redisRTT is the round trip measured: one connection, one PING at a time;
// then conc connections, closed loop, for the same duration as a round;
// then the same two with the store's own call (ratelimit.Redis.Allow, GCRA
// in one script, through go-redis), with the process's CPU per call.
type redisRTT struct {
	SerialP50, SerialP99 time.Duration
	Conc                 int
	ConcRate             float64 // PINGs answered per second
	ConcP50, ConcP99     time.Duration
	Version              string

	AllowP50, AllowP99         time.Duration // one at a time
	AllowConcRate              float64
	AllowConcP50, AllowConcP99 time.Duration
	AllowCPU                   time.Duration // process CPU per call, concurrent
}

// startRedis starts redis-server on a free loopback port, without
// persistence, and returns its address and how to stop it.
func startRedis(ctx context.Context) (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis-server is not installed (Debian: apt-get install redis-server): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(redisStartWait); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_, err = ping(bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)))
			_ = c.Close()
			if err == nil {
				return addr, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server did not answer on %s within %s: %v", addr, redisStartWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends PING and reads +PONG, returning how long that took.
func ping(rw *bufio.ReadWriter) (time.Duration, error) {
	t := time.Now()
	if _, err := rw.WriteString("*1\r\n$4\r\nPING\r\n"); err != nil {
		return 0, err
	}
	if err := rw.Flush(); err != nil {
		return 0, err
	}
	line, err := rw.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "+PONG\r\n" {
		return 0, fmt.Errorf("redis answered %q to PING", line)
	}
	return time.Since(t), nil
}

// redisVersion asks INFO server for redis_version.
func redisVersion(rw *bufio.ReadWriter) string {
	if _, err := rw.WriteString("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil || rw.Flush() != nil {
		return ""
	}
	head, err := rw.ReadString('\n') // $<length>
	if err != nil || len(head) < 3 || head[0] != '$' {
		return ""
	}
	n, err := strconv.Atoi(head[1 : len(head)-2])
	if err != nil || n <= 0 || n > 1<<20 {
		return ""
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(rw, body); err != nil {
		return ""
	}
	for _, line := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			return v
		}
	}
	return ""
}

// measureRedisRTT starts redis-server and measures PING round trips.
func measureRedisRTT(ctx context.Context, conc int, d time.Duration) (*redisRTT, error) {
	addr, stop, err := startRedis(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	dial := func() (*bufio.ReadWriter, func(), error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		return bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), func() { _ = c.Close() }, nil
	}
	res := &redisRTT{Conc: conc}
	rw, closeConn, err := dial()
	if err != nil {
		return nil, err
	}
	res.Version = redisVersion(rw)
	lat := make([]time.Duration, 0, redisPings)
	for range redisPings {
		l, err := ping(rw)
		if err != nil {
			closeConn()
			return nil, err
		}
		lat = append(lat, l)
	}
	closeConn()
	slices.Sort(lat)
	res.SerialP50, res.SerialP99 = quantile(lat, 0.5), quantile(lat, 0.99)

	start := time.Now()
	all, err := concurrently(conc, d, "PING", func(int) (func(int) (time.Duration, error), func(), error) {
		rw, closeConn, err := dial()
		if err != nil {
			return nil, nil, err
		}
		return func(int) (time.Duration, error) { return ping(rw) }, closeConn, nil
	})
	if err != nil {
		return nil, err
	}
	res.ConcRate = float64(len(all)) / time.Since(start).Seconds()
	slices.Sort(all)
	res.ConcP50, res.ConcP99 = quantile(all, 0.5), quantile(all, 0.99)

	store, err := ratelimit.NewRedis("redis://" + addr + "/0")
	if err != nil {
		return nil, err
	}
	defer func() { _ = store.Close() }()
	limit := ratelimit.Limit{Requests: hotLimit.Requests, Period: hotLimit.Period}
	allow := func(i int) (time.Duration, error) {
		t := time.Now()
		r, err := store.Allow(ctx, fmt.Sprintf("APIKey/bench/key-%04d", i%hotKeys), limit)
		if err == nil && !r.Allowed {
			err = errors.New("the Redis store refused a request under a limit never reached")
		}
		return time.Since(t), err
	}
	lat = lat[:0]
	for i := range redisPings {
		l, err := allow(i)
		if err != nil {
			return nil, err
		}
		lat = append(lat, l)
	}
	slices.Sort(lat)
	res.AllowP50, res.AllowP99 = quantile(lat, 0.5), quantile(lat, 0.99)

	start, cpu0 := time.Now(), processCPU()
	all, err = concurrently(conc, d, "Allow", func(int) (func(int) (time.Duration, error), func(), error) {
		return allow, func() {}, nil
	})
	if err != nil {
		return nil, err
	}
	res.AllowCPU = (processCPU() - cpu0) / time.Duration(len(all))
	res.AllowConcRate = float64(len(all)) / time.Since(start).Seconds()
	slices.Sort(all)
	res.AllowConcP50, res.AllowConcP99 = quantile(all, 0.5), quantile(all, 0.99)
	return res, nil
}

// concurrently runs conc workers until d has passed; each gets its call
// from setup (and a function to release what setup took) and makes calls
// numbered w, w+conc, w+2·conc… It returns every latency, or the first
// error. what names the call in the error when none answered.
func concurrently(conc int, d time.Duration, what string,
	setup func(w int) (func(i int) (time.Duration, error), func(), error)) ([]time.Duration, error) {
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := range conc {
		wg.Go(func() {
			call, release, err := setup(w)
			var mine []time.Duration
			if err == nil {
				defer release()
				for i := w; time.Now().Before(deadline); i += conc {
					var l time.Duration
					if l, err = call(i); err != nil {
						break
					}
					mine = append(mine, l)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			all = append(all, mine...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if len(all) == 0 {
		return nil, errors.New("no " + what + " answered")
	}
	return all, nil
}
