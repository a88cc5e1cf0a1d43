package operator

import (
	"context"
	"errors"
	"io"
	"net/url"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/ratelimit"
)

// maxEventErrorLen bounds the store's error quoted in an event.
const maxEventErrorLen = 256

// rateLimitStore is the store of --rate-limit-store: nil for "" or "local"
// (the key server then counts in each replica, ratelimit.Local), else the Redis at
// that URL behind a ratelimit.Guard, which answers by
// --rate-limit-store-failure while Redis fails and reports each change of
// its availability to pod (storeTransitions). The closer closes the
// connections to Redis.
func rateLimitStore(o Options, rec events.EventRecorder, pod *corev1.Pod, log logr.Logger) (ratelimit.Store, io.Closer, error) {
	if o.RateLimitStore == "" || o.RateLimitStore == ratelimit.LocalStoreFlag {
		return nil, nil, nil
	}
	if !validRateLimitStore(o.RateLimitStore) {
		return nil, nil, errRateLimitStoreURL
	}
	redis, err := ratelimit.NewRedis(o.RateLimitStore)
	if err != nil {
		return nil, nil, err
	}
	// go-redis's own lines (a failed dial) to our log at V(1): the Guard
	// reports the failures already.
	ratelimit.SetRedisLogger(log)
	guard := ratelimit.NewGuard(redis, ratelimit.GuardOptions{
		Mode:         o.RateLimitStoreFailure,
		OnTransition: storeTransitions(rec, pod, redis.String(), o.RateLimitStoreFailure, log),
	})
	log.Info("rate limits are counted in Redis, exact across replicas", "store", redis.String(), "onFailure", o.RateLimitStoreFailure.String())
	return guard, redis, nil
}

// podOf is the Pod this process runs in, as the downward API tells it
// (POD_NAME, POD_NAMESPACE, POD_UID: config/manager/key_server.yaml); nil
// outside a Pod (POD_NAME unset), such as under make dev.
func podOf(getenv func(string) string) *corev1.Pod {
	name, ns := getenv("POD_NAME"), getenv("POD_NAMESPACE")
	if name == "" || ns == "" {
		return nil
	}
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace, pod.UID = name, ns, types.UID(getenv("POD_UID"))
	// The recorder names the object by its kind: set it, a bare struct
	// carries none.
	pod.APIVersion, pod.Kind = "v1", "Pod"
	return pod
}

// storeTransitions reports a change of the rate-limit store's availability:
// a Warning event on the key server's own Pod when it stops answering, a
// Normal one when it answers again, and a log line each time; without a Pod
// the log line alone. The Guard calls it once per change, not per request,
// and it does not block (the recorder queues).
func storeTransitions(rec events.EventRecorder, pod *corev1.Pod, store string, mode ratelimit.FailureMode, log logr.Logger) func(available bool, err error) {
	consequence := "requests of rate-limited keys pass uncounted (--rate-limit-store-failure=open)"
	if mode == ratelimit.FailClosed {
		consequence = "requests of rate-limited keys are refused with 429 (--rate-limit-store-failure=closed)"
	}
	return func(available bool, err error) {
		if available {
			log.Info("the rate-limit store answers again", "store", store)
			if pod != nil && rec != nil {
				rec.Eventf(pod, nil, corev1.EventTypeNormal, kw.EventRateLimitStoreAvailable, "RateLimit",
					"the rate-limit store %s answers again; rate limits are counted", store)
			}
			return
		}
		msg := "unknown error"
		if err != nil {
			msg = err.Error()
		}
		if len(msg) > maxEventErrorLen {
			msg = msg[:maxEventErrorLen]
		}
		log.Error(err, "the rate-limit store stopped answering", "store", store, "onFailure", mode.String())
		if pod != nil && rec != nil {
			rec.Eventf(pod, nil, corev1.EventTypeWarning, kw.EventRateLimitStoreUnavailable, "RateLimit",
				"the rate-limit store stopped answering (%s); until it answers again %s", msg, consequence)
		}
	}
}

// closeOnStop closes c when the manager stops.
type closeOnStop struct{ c io.Closer }

func (s closeOnStop) Start(ctx context.Context) error {
	<-ctx.Done()
	return s.c.Close()
}

var errRateLimitStoreURL = errors.New("--rate-limit-store must be \"local\" or a redis:// or rediss:// URL with a host (the value is not repeated: it may hold a password)")

// validRateLimitStore refuses a --rate-limit-store that is not a Redis URL
// before anything starts; the URL is not quoted (it may hold a password).
func validRateLimitStore(s string) bool {
	if s == "" || s == ratelimit.LocalStoreFlag {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.Host != ""
}
