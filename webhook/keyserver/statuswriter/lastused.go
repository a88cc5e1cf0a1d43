package statuswriter

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/usage"
)

// LastUsedInterval: lastUsedAt is written at most this often per key, so
// validation traffic never becomes API server write traffic.
const LastUsedInterval = time.Minute

type usageKey struct{ kind, namespace, name string }

type usageEntry struct {
	// used is the last use kept, in Unix nanoseconds (0: none yet).
	used atomic.Int64
	// accepted and refused count requests since the last harvest (due):
	// the request path adds to them atomically.
	accepted, refused atomic.Int64

	// Under LastUsed.mu:
	// written is when the entry was last written back.
	written time.Time
	// wroteUsed is the use last written back (Unix nanoseconds).
	wroteUsed int64
	// pending is what was counted and not written back yet.
	pending usage.Delta
}

// LastUsed remembers when each key last validated, and how many requests
// it was accepted and refused in, in memory, for batched write-back to
// status.lastUsedAt and status.usage by a UsageWriter. It is safe for
// concurrent use.
//
// Touch is on every validation, from every request goroutine at once: it
// takes no lock (a lock-free map read and, at most once a second per key,
// a compare-and-swap), so validations never queue behind each other or
// behind a write-back; Count likewise (a map read and an atomic add), and
// Use, both on one map read.
//
// It holds an entry per key that validated here, dropped when a write-back
// finds the key gone: bounded by the keys that exist.
type LastUsed struct {
	entries sync.Map // usageKey → *usageEntry
	// mu serialises the write-back side (due, forget).
	mu sync.Mutex
}

// NewLastUsed returns an empty LastUsed.
func NewLastUsed() *LastUsed { return &LastUsed{} }

// Touch records that the key of kind (hashsecret.KindAPIKey or
// KindAccessKeyPair) owned by namespace/name validated at now.
//
// It keeps the first use of each second: lastUsedAt is written with second
// precision (metav1.Time), so a later use within the same second would
// change nothing that is written, and skipping it spares a write to memory
// every request goroutine shares.
func (u *LastUsed) Touch(kind, namespace, name string, now time.Time) {
	if name == "" {
		return
	}
	u.entry(kind, namespace, name).touch(now)
}

func (e *usageEntry) touch(now time.Time) {
	t := now.UnixNano()
	for {
		old := e.used.Load()
		if old != 0 && t/int64(time.Second) <= old/int64(time.Second) {
			return // this second, or an earlier one, is already recorded after it
		}
		if e.used.CompareAndSwap(old, t) {
			return
		}
	}
}

// Count records a request of the key of kind owned by namespace/name whose
// outcome is known: accepted (let through) or refused (by an allow-list, a
// KeyPolicy, a required scope or a rate limit). Only a key that validated
// may be counted: the key server never counts a key a client merely names.
func (u *LastUsed) Count(kind, namespace, name string, accepted bool) {
	if name == "" {
		return
	}
	u.entry(kind, namespace, name).count(accepted)
}

// Use is Touch and Count at once, for a request whose key validated at now
// and whose outcome is known: one map lookup instead of two, on the path
// every request takes.
func (u *LastUsed) Use(kind, namespace, name string, now time.Time, accepted bool) {
	if name == "" {
		return
	}
	e := u.entry(kind, namespace, name)
	e.touch(now)
	e.count(accepted)
}

func (e *usageEntry) count(accepted bool) {
	if accepted {
		e.accepted.Add(1)
	} else {
		e.refused.Add(1)
	}
}

// Counted is what was counted for a key and not written back yet.
func (u *LastUsed) Counted(kind, namespace, name string) (accepted, refused int64) {
	v, ok := u.entries.Load(usageKey{kind, namespace, name})
	if !ok {
		return 0, 0
	}
	e := v.(*usageEntry)
	u.mu.Lock()
	defer u.mu.Unlock()
	return e.accepted.Load() + e.pending.Accepted, e.refused.Load() + e.pending.Refused
}

func (u *LastUsed) entry(kind, namespace, name string) *usageEntry {
	v, ok := u.entries.Load(usageKey{kind, namespace, name})
	if !ok {
		// Copies: the map must not pin the caller's strings (the index's
		// record of the key) once the record is replaced.
		k := usageKey{strings.Clone(kind), strings.Clone(namespace), strings.Clone(name)}
		v, _ = u.entries.LoadOrStore(k, &usageEntry{})
	}
	return v.(*usageEntry)
}

// write is one key's due write-back.
type write struct {
	key usageKey
	// used is the last use (zero: none newer than the last written).
	used time.Time
	// delta is what was counted since the last write.
	delta usage.Delta
}

// due moves every key's counts into its pending delta, in the hour of now
// (so a request is counted in the hour it was harvested in, at most one
// UsageWriter.Every late), and returns the keys with a use or counts not
// written yet whose last write is at least LastUsedInterval old, marking
// them written.
func (u *LastUsed) due(now time.Time) []write {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []write
	u.entries.Range(func(k, v any) bool {
		e := v.(*usageEntry)
		if a, r := e.accepted.Swap(0), e.refused.Swap(0); a != 0 || r != 0 {
			e.pending.Add(a, r, now)
		}
		n := e.used.Load()
		newUse := n != 0 && n > e.wroteUsed
		if (!newUse && e.pending.IsZero()) || now.Sub(e.written) < LastUsedInterval {
			return true
		}
		w := write{key: k.(usageKey), delta: e.pending}
		if newUse {
			w.used = time.Unix(0, n)
		}
		out = append(out, w)
		e.written, e.wroteUsed, e.pending = now, n, usage.Delta{}
		return true
	})
	return out
}

// retry puts back a write that failed, for the next batch: its counts join
// the pending ones and its use is written again.
func (u *LastUsed) retry(w write, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	v, ok := u.entries.Load(w.key)
	if !ok {
		return
	}
	e := v.(*usageEntry)
	e.pending.Merge(w.delta, now)
	if !w.used.IsZero() {
		e.wroteUsed = 0
	}
}

// forget drops a key whose write-back found it gone, and its counts.
func (u *LastUsed) forget(k usageKey) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.entries.Delete(k)
}

// UsageWriter is a manager.Runnable writing lastUsedAt back in batches.
type UsageWriter struct {
	// LastUsed is what the key server recorded (keyserver.Server.LastUsed).
	LastUsed *LastUsed
	Client   client.Client
	// Clock is the key server's (nil: the real clock).
	Clock clock.PassiveClock
	// Every is how often it looks for due writes (LastUsedInterval bounds
	// the writes per key).
	Every time.Duration
}

// NeedLeaderElection is false: each replica writes what it observed.
func (w *UsageWriter) NeedLeaderElection() bool { return false }

// Start flushes until ctx is done.
func (w *UsageWriter) Start(ctx context.Context) error {
	every := w.Every
	if every == 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Flush(ctx)
		}
	}
}

// Flush writes every due lastUsedAt and usage now.
//
// Each key is read and written back with its resourceVersion as a
// precondition, and read again when another writer (another replica, or
// the controller) wrote in between: every replica adds its own counts, so
// none overwrites another's. A write that still fails is put back for the
// next batch; a key found deleted is forgotten with its counts.
func (w *UsageWriter) Flush(ctx context.Context) {
	log := logf.FromContext(ctx).WithName("last-used")
	clk := w.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	now := clk.Now()
	for _, wr := range w.LastUsed.due(now) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return w.write(ctx, wr, now) })
		switch {
		case apierrors.IsNotFound(err):
			w.LastUsed.forget(wr.key)
		case err != nil:
			w.LastUsed.retry(wr, now)
			log.V(1).Info("could not record last use", "namespace", wr.key.namespace, "name", wr.key.name, "error", err.Error())
		}
	}
}

// write reads the key and patches its status with wr added, on the
// condition that nobody wrote it since the read.
func (w *UsageWriter) write(ctx context.Context, wr write, now time.Time) error {
	var (
		obj      client.Object
		lastUsed **metav1.Time
		use      **kw.KeyUsage
	)
	switch wr.key.kind {
	case hashsecret.KindAPIKey:
		k := &kw.APIKey{}
		obj, lastUsed, use = k, &k.Status.LastUsedAt, &k.Status.Usage
	case hashsecret.KindAccessKeyPair:
		p := &kw.AccessKeyPair{}
		obj, lastUsed, use = p, &p.Status.LastUsedAt, &p.Status.Usage
	default:
		return nil
	}
	if err := w.Client.Get(ctx, client.ObjectKey{Namespace: wr.key.namespace, Name: wr.key.name}, obj); err != nil {
		return err
	}
	orig := obj.DeepCopyObject().(client.Object)
	changed := false
	// Replicas write their own last use: the latest stays.
	if !wr.used.IsZero() && (*lastUsed == nil || wr.used.Truncate(time.Second).After((*lastUsed).Time)) {
		t := metav1.NewTime(wr.used)
		*lastUsed, changed = &t, true
	}
	if !wr.delta.IsZero() {
		*use, changed = usage.Apply(*use, wr.delta, now), true
	}
	if !changed {
		return nil
	}
	return w.Client.Status().Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}
