package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultRedisTimeout bounds each Allow against Redis, connecting included:
// a request never waits longer on a slow or dead Redis. An in-cluster round
// trip takes well under a millisecond.
const DefaultRedisTimeout = 100 * time.Millisecond

// RedisKeyPrefix starts the name of every key the Redis store writes, after
// redis_rate's own "rate:" prefix: "rate:keyward:rl:" and the SHA-256 of the
// bucket name in hex, so keys have one length whatever the name and carry no
// tenant's names.
const RedisKeyPrefix = "keyward:rl:"

// Redis is the Store shared by all key server replicas: each request is one
// round trip running redis_rate's GCRA script (github.com/go-redis/redis_rate)
// on the Redis server, whose clock is the only one used, so limits are exact
// across replicas. A bucket's key expires when its TAT passes, so Redis holds
// only buckets that owe time.
type Redis struct {
	client   *redis.Client
	limiter  *redis_rate.Limiter
	timeout  time.Duration
	redacted string
}

type redisConfig struct {
	timeout time.Duration
}

// RedisOption configures NewRedis.
type RedisOption func(*redisConfig)

// Timeout bounds each call to Redis (DefaultRedisTimeout when d <= 0).
func Timeout(d time.Duration) RedisOption {
	return func(c *redisConfig) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// NewRedis returns a Store on the Redis at rawURL: redis://[user:password@]host[:port][/db]
// or rediss://… for TLS (go-redis ParseURL). It does not connect: a Redis
// that is down now is an error of each Allow until it is up.
func NewRedis(rawURL string, opts ...RedisOption) (*Redis, error) {
	cfg := redisConfig{timeout: DefaultRedisTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	// url.Parse's errors quote the whole URL, password included: they are
	// not passed on.
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("rate-limit store: the Redis URL does not parse (not repeated here, as it may hold a password)")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("rate-limit store: URL scheme %q, want redis:// or rediss://", u.Scheme)
	}
	redacted := u.Redacted()
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("rate-limit store %s: %w", redacted, err)
	}
	// Every wait is bounded by the call's timeout, and nothing is retried:
	// a retry would multiply the time a request waits on a dead Redis.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = cfg.timeout, cfg.timeout, cfg.timeout, cfg.timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	// No round trips on connect beyond AUTH and SELECT: no client
	// identity, no Redis Cloud maintenance notifications.
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	client := redis.NewClient(o)
	return &Redis{client: client, limiter: redis_rate.NewLimiter(client), timeout: cfg.timeout, redacted: redacted}, nil
}

// Allow implements Store. A zero Limit limits nothing and asks Redis
// nothing. An error (Redis unreachable, slower than the timeout) means no
// answer; the request may still be counted if its command reached a Redis
// that ran it late.
func (r *Redis) Allow(ctx context.Context, name string, l Limit) (Result, error) {
	if l.IsZero() {
		return Result{Allowed: true}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := r.limiter.Allow(ctx, redisKey(name), redisLimit(l))
	if err != nil {
		return Result{}, fmt.Errorf("rate-limit store %s: %w", r.redacted, err)
	}
	return Result{
		Allowed:    res.Allowed > 0,
		Remaining:  res.Remaining,
		RetryAfter: max(res.RetryAfter, 0), // redis_rate says -1 when allowed
		ResetAfter: res.ResetAfter,
	}, nil
}

// Ping checks that Redis answers, within the timeout.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("rate-limit store %s: %w", r.redacted, err)
	}
	return nil
}

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.client.Close() }

// String is the store's URL without its password, for logs.
func (r *Redis) String() string { return r.redacted }

func redisKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return RedisKeyPrefix + hex.EncodeToString(sum[:])
}

// redisLimit is l as redis_rate takes it, with the emission interval and
// burst the local store computes (Rate 1 per interval): both stores then
// run GCRA on the same numbers, and Redis never gets an expiry too large
// for it.
func redisLimit(l Limit) redis_rate.Limit {
	interval, burstOffset := spans(l)
	return redis_rate.Limit{Rate: 1, Period: interval, Burst: int(burstOffset / interval)}
}

// SetRedisLogger sends go-redis's own log lines (a failed dial, a
// connection it could not close) to log at V(1) rather than to stderr: the
// store's errors already reach the Guard, which counts and reports them.
// go-redis has one logger per process, so call it once, at start-up. The
// lines name Redis's address and errors, never a password.
func SetRedisLogger(log logr.Logger) { redis.SetLogger(redisLogger{log.V(1)}) }

type redisLogger struct{ log logr.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Info(fmt.Sprintf(format, v...))
}
