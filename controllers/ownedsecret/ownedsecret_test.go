package ownedsecret

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyward/keyward/internal/hashsecret"
)

func hashSecret(rv string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: "keyward-system", Name: hashsecret.Name(hashsecret.KindAPIKey, "team-a", "billing"), ResourceVersion: rv,
		Labels:      map[string]string{hashsecret.LabelKind: hashsecret.KindAPIKey},
		Annotations: map[string]string{hashsecret.AnnotationOwner: "team-a/billing"},
	}}
}

func TestEnqueueHashOwnerSkipsOnlyItsOwnWrites(t *testing.T) {
	billing := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team-a", Name: "billing"}}
	var own OwnWrites
	own.Wrote(hashSecret("10"))
	h := EnqueueHashOwner(hashsecret.KindAPIKey, &own)
	other := hashSecret("11")
	other.Labels[hashsecret.LabelKind] = hashsecret.KindAccessKeyPair
	noOwner := hashSecret("12")
	delete(noOwner.Annotations, hashsecret.AnnotationOwner)

	cases := map[string]struct {
		send func(context.Context, workqueue.TypedRateLimitingInterface[reconcile.Request])
		want int
	}{
		"the create event of our own write": {func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Create(ctx, event.CreateEvent{Object: hashSecret("10")}, q)
		}, 0},
		"the update event of our own write": {func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Update(ctx, event.UpdateEvent{ObjectOld: hashSecret("9"), ObjectNew: hashSecret("10")}, q)
		}, 0},
		"someone else's edit": {func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Update(ctx, event.UpdateEvent{ObjectOld: hashSecret("10"), ObjectNew: hashSecret("13")}, q)
		}, 1},
		"a deletion, even at our own version": {func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Delete(ctx, event.DeleteEvent{Object: hashSecret("10")}, q)
		}, 1},
		"another kind's hash Secret": {func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Create(ctx, event.CreateEvent{Object: other}, q)
		}, 0},
		"a Secret without an owner annotation": {func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			h.Create(ctx, event.CreateEvent{Object: noOwner}, q)
		}, 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer q.ShutDown()
			c.send(context.Background(), q)
			if q.Len() != c.want {
				t.Fatalf("%d requests queued, want %d", q.Len(), c.want)
			}
			if c.want == 1 {
				if got, _ := q.Get(); got != billing {
					t.Fatalf("queued %v, want %v", got, billing)
				}
			}
		})
	}
	own.Forget("keyward-system", hashSecret("").Name)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	h.Create(context.Background(), event.CreateEvent{Object: hashSecret("10")}, q)
	if q.Len() != 1 {
		t.Fatal("a forgotten write still suppresses its event")
	}
}
