package ownedsecret

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/kube"
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

func TestStaleOnlyForAnEarlierObjectOfTheSameName(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing", UID: "new"}} // any object will do
	labelled := func(ns, uid string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{
			hashsecret.LabelOwnerNamespace: "team-a", hashsecret.LabelOwner: "billing", hashsecret.LabelOwnerUID: uid}}}
	}
	referenced := func(kind, name, uid string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", OwnerReferences: []metav1.OwnerReference{
			{Kind: kind, Name: name, UID: types.UID(uid), Controller: ptrTo(true)}}}}
	}
	unlabelled := labelled("keyward-keys", "old")
	delete(unlabelled.Labels, hashsecret.LabelOwnerUID)
	cases := map[string]struct {
		sec  *corev1.Secret
		want bool
	}{
		"another namespace, an earlier owner's UID":     {labelled("keyward-keys", "old"), true},
		"another namespace, this owner's UID":           {labelled("keyward-keys", "new"), false},
		"another namespace, no owner UID (hand-made)":   {unlabelled, false},
		"same namespace, an earlier owner of this kind": {referenced("APIKey", "billing", "old"), true},
		"same namespace, this owner":                    {referenced("APIKey", "billing", "new"), false},
		"same namespace, another kind's":                {referenced("Deployment", "billing", "old"), false},
		"same namespace, no owner reference":            {&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a"}}, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Stale(owner, "APIKey", c.sec); got != c.want {
				t.Fatalf("Stale = %v, want %v", got, c.want)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

// The admission policy that bounds the controllers (config/policy) accepts a
// delivery Secret only with the managed-by label and a controller reference
// to its APIKey: Put writes both on every Secret, and puts the label back on
// one that lost it (written before the label, or stripped by hand).
func TestPutMarksEveryDeliverySecretKeywards(t *testing.T) {
	ctx := context.Background()
	owner := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing", UID: "u1"}}
	c := fake.NewClientBuilder().WithScheme(kube.Scheme()).WithObjects(owner).Build()
	d := Desired{Name: "billing-key", Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"key": []byte("k1")},
		Labels: map[string]string{hashsecret.LabelManagedBy: "someone-else", "team": "a"}}
	marked := func(sec *corev1.Secret) {
		t.Helper()
		if got := sec.Labels[hashsecret.LabelManagedBy]; got != hashsecret.ManagedBy {
			t.Errorf("managed-by label %q, want %q", got, hashsecret.ManagedBy)
		}
		if sec.Labels["team"] != "a" {
			t.Error("the caller's own label was dropped")
		}
		if ref := metav1.GetControllerOf(sec); ref == nil || ref.UID != owner.UID || ref.Kind != "APIKey" ||
			ref.APIVersion != kw.GroupVersion.String() {
			t.Errorf("controller reference %+v, want the APIKey's", ref)
		}
		if sec.Type != corev1.SecretTypeOpaque {
			t.Errorf("type %q", sec.Type)
		}
	}

	created, wrote, err := Put(ctx, c, owner, nil, d)
	if err != nil || !wrote {
		t.Fatalf("create: wrote %v, %v", wrote, err)
	}
	marked(created)

	stripped := created.DeepCopy()
	delete(stripped.Labels, hashsecret.LabelManagedBy)
	if err := c.Update(ctx, stripped); err != nil {
		t.Fatal(err)
	}
	updated, wrote, err := Put(ctx, c, owner, stripped, d)
	if err != nil || !wrote {
		t.Fatalf("the same data without the label: wrote %v, %v; want the label written back", wrote, err)
	}
	marked(updated)
	live := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(updated), live); err != nil {
		t.Fatal(err)
	}
	marked(live)
	if _, wrote, _ := Put(ctx, c, owner, live, d); wrote {
		t.Error("an unchanged Secret was written again")
	}
}
