package operator

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Keyward's webhook configuration, and nothing else of its kind: get,
// update, and list and watch with a metadata.name field selector, which the
// API server authorizes against resourceNames. A ValidatingAdmissionPolicy
// (config/policy) lets the controllers change only its CA bundle.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=keyward-validating-webhook-configuration,verbs=get;list;watch;update

// caInjector keeps the CA of the webhook certificate Secret in every webhook
// of Keyward's ValidatingWebhookConfiguration.
//
// cert-controller can inject it too, but its cache lists and watches every
// webhook configuration in the cluster, and RBAC cannot restrict an
// unfiltered list to one name: its controllers would need the right to
// read, and with it to update, every admission webhook. This one's cache
// asks for the one configuration and the one Secret by name.
type caInjector struct {
	reader   client.Reader // the injector's own cache
	writer   client.Writer
	secret   types.NamespacedName
	config   string
	injected chan struct{} // closed once the configuration carries the CA
	once     sync.Once
}

// addCAInjector adds the injector and its cache to mgr; the returned channel
// is closed once the CA is in the configuration (or there is none to fill).
func addCAInjector(mgr ctrl.Manager, cfg *rest.Config, namespace string) (<-chan struct{}, error) {
	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	c, err := cache.New(cfg, cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: byName(WebhookConfigName)},
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{namespace: {}}, Field: byName(WebhookCertSecret)},
		}})
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(ownCache{c}); err != nil {
		return nil, err
	}
	r := &caInjector{reader: c, writer: mgr.GetClient(), secret: types.NamespacedName{Namespace: namespace, Name: WebhookCertSecret},
		config: WebhookConfigName, injected: make(chan struct{})}
	one := func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: WebhookConfigName}}}
	}
	err = ctrl.NewControllerManagedBy(mgr).Named("webhook-ca-injector").
		// Every replica serves webhooks and waits for the CA, as each one's
		// rotator waits for its certificate; updates carry resourceVersion.
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		WatchesRawSource(source.Kind[client.Object](c, &admissionregistrationv1.ValidatingWebhookConfiguration{}, handler.EnqueueRequestsFromMapFunc(one))).
		WatchesRawSource(source.Kind[client.Object](c, &corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(one))).
		Complete(r)
	return r.injected, err
}

func (r *caInjector) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	sec := &corev1.Secret{}
	if err := r.reader.Get(ctx, r.secret, sec); err != nil {
		// Absent or unfilled: the rotator's write is the next event.
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	ca := sec.Data["ca.crt"]
	if len(ca) == 0 {
		return reconcile.Result{}, nil
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	switch err := r.reader.Get(ctx, types.NamespacedName{Name: r.config}, vwc); {
	case apierrors.IsNotFound(err):
		// Installed without it: nothing waits on this CA (cert-controller
		// too logs and carries on); its creation is an event.
		log.FromContext(ctx).Info("no webhook configuration to inject the CA into", "name", r.config)
		r.done()
		return reconcile.Result{}, nil
	case err != nil:
		return reconcile.Result{}, err
	}
	if injectCA(vwc, ca) {
		if err := r.writer.Update(ctx, vwc); err != nil {
			return reconcile.Result{}, fmt.Errorf("injecting the CA into %s: %w", r.config, err)
		}
	}
	r.done()
	return reconcile.Result{}, nil
}

func (r *caInjector) done() { r.once.Do(func() { close(r.injected) }) }

// injectCA sets ca as the CA bundle of every webhook of vwc and reports
// whether that changed anything.
func injectCA(vwc *admissionregistrationv1.ValidatingWebhookConfiguration, ca []byte) bool {
	changed := false
	for i := range vwc.Webhooks {
		if cc := &vwc.Webhooks[i].ClientConfig; !bytes.Equal(cc.CABundle, ca) {
			cc.CABundle = bytes.Clone(ca)
			changed = true
		}
	}
	return changed
}

// ownCache makes the manager start a cache of its own with its other caches,
// on every replica, before the controllers that watch it.
type ownCache struct{ cache.Cache }

func (c ownCache) GetCache() cache.Cache { return c.Cache }
