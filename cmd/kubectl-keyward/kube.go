package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
)

// annotationShownOnce marks an APIKey that `create apikey` delivered to a
// one-time age identity: nobody can decrypt a later version's ciphertext.
const annotationShownOnce = "keys.keyward.dev/shown-once"

// pollInterval is how often a wait re-reads the object.
const pollInterval = 150 * time.Millisecond

// kubeClient is a live (uncached) client and the namespace to work in.
type kubeClient struct {
	client.Client
	namespace string
	// explicitNS says the namespace came from --namespace, not kubeconfig.
	explicitNS bool
}

// namespace resolves the namespace from the flags and kubeconfig alone.
func (a *app) namespace() (string, bool, error) {
	ns, explicit, err := a.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", false, fmt.Errorf("reading kubeconfig: %w", err)
	}
	return ns, explicit, nil
}

func (a *app) client() (*kubeClient, error) {
	cfg, err := a.kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-keyward"
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	ns, explicit, err := a.namespace()
	if err != nil {
		return nil, err
	}
	return &kubeClient{Client: c, namespace: ns, explicitNS: explicit}, nil
}

// getKey reads one APIKey, with an error naming it when it is missing.
func (c *kubeClient) getKey(ctx context.Context, name string) (*kw.APIKey, error) {
	key := &kw.APIKey{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: name}, key); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("APIKey %q not found in namespace %q", name, c.namespace)
		}
		return nil, err
	}
	return key, nil
}

// mergePatch applies a JSON merge patch to an APIKey.
func (c *kubeClient) mergePatch(ctx context.Context, name string, patch map[string]any) error {
	_, err := c.patchKey(ctx, name, patch)
	return err
}

// patchKey applies a JSON merge patch to an APIKey and returns the result.
func (c *kubeClient) patchKey(ctx context.Context, name string, patch map[string]any) (*kw.APIKey, error) {
	raw, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: name}}
	if err := c.Patch(ctx, key, client.RawPatch(types.MergePatchType, raw)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("APIKey %q not found in namespace %q", name, c.namespace)
		}
		return nil, err
	}
	return key, nil
}

// errTimeout is returned by waitKey when the deadline passes.
var errTimeout = errors.New("timed out")

// waitKey re-reads the APIKey until done says so, done fails, or timeout
// passes. The last object read is returned in every case.
func (c *kubeClient) waitKey(ctx context.Context, name string, timeout time.Duration, done func(*kw.APIKey) (bool, error)) (*kw.APIKey, error) {
	var last *kw.APIKey
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		key, err := c.getKey(ctx, name)
		if err != nil {
			return false, err
		}
		last = key
		return done(key)
	})
	if err != nil && wait.Interrupted(err) && ctx.Err() == nil {
		return last, errTimeout
	}
	return last, err
}

// readyOf returns the Ready condition when it describes the current spec.
func readyOf(key *kw.APIKey) *metav1.Condition {
	c := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionReady)
	if c == nil || c.ObservedGeneration < key.Generation {
		return nil
	}
	return c
}

// blockedReasons stop a key from being issued until someone acts.
var blockedReasons = map[string]bool{
	kw.ReasonDeliveryConflict: true, kw.ReasonDeliveryFailed: true,
	kw.ReasonImportNotFound: true, kw.ReasonImportRefused: true, kw.ReasonImportConflict: true,
}

// issued is the wait condition of create: Ready for the current spec, with
// the age delivery of the current version when recipients are set.
func issued(key *kw.APIKey) (bool, error) {
	c := readyOf(key)
	if c == nil {
		return false, nil
	}
	if c.Status != metav1.ConditionTrue {
		if blockedReasons[c.Reason] {
			return false, fmt.Errorf("APIKey %q was not issued: %s: %s", key.Name, c.Reason, c.Message)
		}
		return false, nil
	}
	if key.Spec.Delivery != nil {
		d := key.Status.AgeDelivery
		if d == nil || d.KeyID != key.Status.KeyID || !sameSet(d.Recipients, key.Spec.Delivery.AgeRecipients) {
			return false, nil
		}
	}
	return key.Status.KeyID != "", nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]bool, len(a))
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}
