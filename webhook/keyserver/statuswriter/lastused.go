package statuswriter

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// LastUsedInterval: lastUsedAt is written at most this often per key, so
// validation traffic never becomes API server write traffic.
const LastUsedInterval = time.Minute

type usageKey struct{ kind, namespace, name string }

type usageEntry struct {
	// used is the last use kept, in Unix nanoseconds (0: none yet): the
	// only field the request path writes, atomically.
	used atomic.Int64
	// written is when the entry was last written back (LastUsed.mu).
	written time.Time
}

// LastUsed remembers when each key last validated, in memory, for batched
// write-back to status.lastUsedAt by a UsageWriter. It is safe for
// concurrent use.
//
// Touch is on every validation, from every request goroutine at once: it
// takes no lock (a lock-free map read and, at most once a second per key,
// a compare-and-swap), so validations never queue behind each other or
// behind a write-back.
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
	v, ok := u.entries.Load(usageKey{kind, namespace, name})
	if !ok {
		// Copies: the map must not pin the caller's strings (the index's
		// record of the key) once the record is replaced.
		k := usageKey{strings.Clone(kind), strings.Clone(namespace), strings.Clone(name)}
		v, _ = u.entries.LoadOrStore(k, &usageEntry{})
	}
	e := v.(*usageEntry)
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

// due returns the keys whose use is newer than what was written and whose
// last write is at least LastUsedInterval old, marking them written.
func (u *LastUsed) due(now time.Time) map[usageKey]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[usageKey]time.Time{}
	u.entries.Range(func(k, v any) bool {
		e := v.(*usageEntry)
		n := e.used.Load()
		if n == 0 {
			return true
		}
		if used := time.Unix(0, n); used.After(e.written) && now.Sub(e.written) >= LastUsedInterval {
			out[k.(usageKey)] = used
			e.written = now
		}
		return true
	})
	return out
}

// forget drops a key whose write-back found it gone.
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

// Flush writes every due lastUsedAt now.
func (w *UsageWriter) Flush(ctx context.Context) {
	log := logf.FromContext(ctx).WithName("last-used")
	clk := w.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	for k, used := range w.LastUsed.due(clk.Now()) {
		var obj client.Object
		switch k.kind {
		case hashsecret.KindAPIKey:
			obj = &kw.APIKey{}
		case hashsecret.KindAccessKeyPair:
			obj = &kw.AccessKeyPair{}
		default:
			continue
		}
		obj.SetNamespace(k.namespace)
		obj.SetName(k.name)
		patch, _ := json.Marshal(map[string]any{"status": map[string]any{"lastUsedAt": metav1.NewTime(used)}})
		err := w.Client.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
		if client.IgnoreNotFound(err) != nil {
			log.V(1).Info("could not record last use", "namespace", k.namespace, "name", k.name, "error", err.Error())
		} else if err != nil {
			w.LastUsed.forget(k)
		}
	}
}
