package keyserver

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	used, written time.Time
}

// usage remembers when each key last validated, in memory, for batched
// write-back to status.lastUsedAt.
type usage struct {
	mu      sync.Mutex
	entries map[usageKey]*usageEntry
}

func newUsage() *usage { return &usage{entries: map[usageKey]*usageEntry{}} }

func (u *usage) touch(kind, namespace, name string, now time.Time) {
	if name == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	k := usageKey{kind, namespace, name}
	e, ok := u.entries[k]
	if !ok {
		e = &usageEntry{}
		u.entries[k] = e
	}
	if now.After(e.used) {
		e.used = now
	}
}

// due returns the keys whose use is newer than what was written and whose
// last write is at least LastUsedInterval old, marking them written.
func (u *usage) due(now time.Time) map[usageKey]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[usageKey]time.Time{}
	for k, e := range u.entries {
		if e.used.After(e.written) && now.Sub(e.written) >= LastUsedInterval {
			out[k] = e.used
			e.written = now
		}
	}
	return out
}

// forget drops a key whose write-back found it gone.
func (u *usage) forget(k usageKey) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.entries, k)
}

// UsageWriter is a manager.Runnable writing lastUsedAt back in batches.
type UsageWriter struct {
	Server *Server
	Client client.Client
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
	for k, used := range w.Server.usage.due(w.Server.opts.Clock.Now()) {
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
			w.Server.usage.forget(k)
		}
	}
}
