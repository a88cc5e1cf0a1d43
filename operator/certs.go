package operator

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Who provides the serving certificates of the admission webhooks and the
// key server (--cert-provisioning).
const (
	// CertsExternal: the files appear in the cert dirs by other means
	// (cert-manager, a mounted Secret, make dev's envtest), or TLS is off.
	CertsExternal = "external"
	// CertsSelf: the operator keeps a CA and serving certificates in Secrets
	// of its namespace, renews them before they expire
	// (open-policy-agent/cert-controller) and injects the CA into the
	// webhook configuration (caInjector).
	CertsSelf = "self"
)

// Names of what self-provisioning manages; config/ uses the same names.
const (
	WebhookCertSecret   = "keyward-webhook-server-cert"
	KeyServerCertSecret = "keyward-key-server-cert"
	WebhookService      = "keyward-webhook-service"
	KeyServerService    = "keyward-key-server"
	WebhookConfigName   = "keyward-validating-webhook-configuration"
)

// certRotators adds a cert-controller rotator for each TLS server this
// manager runs, and returns what each must wait for before it serves: its
// certificate in its cert dir and, for the admission webhooks, the CA in
// the webhook configuration (nil when the part is off or certificates are
// external).
func certRotators(mgr ctrl.Manager, cfg *rest.Config, o Options) (webhookReady []<-chan struct{}, keyServerReady <-chan struct{}, err error) {
	if o.CertProvisioning != CertsSelf {
		return nil, nil, nil
	}
	live, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, nil, err
	}
	// No rotator injects the CA (its cache would list every webhook
	// configuration in the cluster): caInjector does.
	add := func(name, secret, service, dir string) (<-chan struct{}, error) {
		if dir == "" {
			return nil, fmt.Errorf("--cert-provisioning=self needs a cert dir for the %s", name)
		}
		if err := ensureSecret(live, o.OperatorNamespace, secret); err != nil {
			return nil, err
		}
		ready := make(chan struct{})
		svc := fmt.Sprintf("%s.%s.svc", service, o.OperatorNamespace)
		err := rotator.AddRotator(mgr, &rotator.CertRotator{
			SecretKey:      types.NamespacedName{Namespace: o.OperatorNamespace, Name: secret},
			CertDir:        dir,
			CAName:         "keyward-ca",
			CAOrganization: "keyward",
			DNSName:        svc,
			ExtraDNSNames:  []string{svc + ".cluster.local", service + "." + o.OperatorNamespace},
			IsReady:        ready,
			ControllerName: "cert-rotator-" + name,
			// Every replica needs its files; the Secret update is
			// resourceVersion-guarded, so racing replicas converge.
			RequireLeaderElection: false,
		})
		return ready, err
	}
	if o.EnableAdmissionWebhooks {
		mounted, err := add("webhooks", WebhookCertSecret, WebhookService, o.WebhookCertDir)
		if err != nil {
			return nil, nil, err
		}
		injected, err := addCAInjector(mgr, cfg, o.OperatorNamespace)
		if err != nil {
			return nil, nil, err
		}
		webhookReady = []<-chan struct{}{mounted, injected}
	}
	if o.EnableKeyServer {
		if keyServerReady, err = add("key-server", KeyServerCertSecret, KeyServerService, o.KeyServerCertDir); err != nil {
			return nil, nil, err
		}
	}
	return webhookReady, keyServerReady, nil
}

// ensureSecret creates the (empty) Secret a rotator fills: cert-controller
// only updates an existing one. config/ ships them too.
func ensureSecret(c client.Client, namespace, name string) error {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeOpaque}
	// Get first: the key server may update its certificate Secret but not
	// create Secrets, and RBAC refuses a create before it checks existence.
	err := c.Get(context.Background(), client.ObjectKeyFromObject(sec), &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("reading Secret %s/%s for serving certificates: %w", namespace, name, err)
		}
		return nil
	}
	err = c.Create(context.Background(), sec)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Secret %s/%s for serving certificates: %w", namespace, name, err)
	}
	return nil
}

// afterReady runs setup once every ready channel is closed; a
// manager.Runnable that needs no leader.
type afterReady struct {
	ready []<-chan struct{}
	setup func() error
}

func (a afterReady) NeedLeaderElection() bool { return false }

func (a afterReady) Start(ctx context.Context) error {
	for _, ready := range a.ready {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
	}
	return a.setup()
}
