package controllers

import (
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keyward/keyward/controllers/accesskeypair"
	"github.com/keyward/keyward/controllers/apikey"
	"github.com/keyward/keyward/controllers/keypolicy"
	"github.com/keyward/keyward/controllers/signingkey"
	"github.com/keyward/keyward/internal/keylimit"
)

// Options tune the controllers.
type Options struct {
	// ExpiringSoonWindow: how long before a key's expiry it is reported
	// as ExpiringSoon.
	ExpiringSoonWindow time.Duration
	// MaxPairsPerSubject bounds AccessKeyPairs per subject and namespace.
	MaxPairsPerSubject int
	// MaxAPIKeysPerNamespace caps APIKeys per namespace; 0: no cap.
	MaxAPIKeysPerNamespace int
	// OperatorNamespace holds the signing key set.
	OperatorNamespace string
	// KeysNamespace holds every hash Secret (operator.Options resolves its
	// default).
	KeysNamespace string
	// Resync: how often keys with a delivery or importFrom Secret (in the
	// users' namespaces, not watched) re-read it; 0 means the default.
	Resync time.Duration
	// SigningKeyPeriod: a new signing key this often.
	SigningKeyPeriod time.Duration
	// MaxTokenLifetime: the longest token the key server issues; a retired
	// signing key stays published this long.
	MaxTokenLifetime time.Duration
	// AnnotationRotationBurst rotations of one APIKey may be asked for with
	// the rotate annotation at once, then one per AnnotationRotationRefill
	// (zero: apikey's defaults); more are deferred.
	AnnotationRotationBurst  int
	AnnotationRotationRefill time.Duration
	// Clock is the controllers' time source; nil means the real clock.
	Clock clock.PassiveClock
}

// Setup registers every controller with the manager.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if err := (&signingkey.Reconciler{
		Client:           mgr.GetClient(),
		Clock:            o.Clock,
		Namespace:        o.OperatorNamespace,
		Period:           o.SigningKeyPeriod,
		MaxTokenLifetime: o.MaxTokenLifetime,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := keypolicy.Setup(mgr, keypolicy.Options{Clock: o.Clock}); err != nil {
		return err
	}
	if err := (&accesskeypair.Reconciler{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Clock:              o.Clock,
		Recorder:           mgr.GetEventRecorder("keyward-accesskeypair"),
		MaxPerSubject:      o.MaxPairsPerSubject,
		ExpiringSoonWindow: o.ExpiringSoonWindow,
		HashNamespace:      o.KeysNamespace,
		Resync:             o.Resync,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&apikey.Reconciler{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Clock:              o.Clock,
		Recorder:           mgr.GetEventRecorder("keyward-apikey"),
		ExpiringSoonWindow: o.ExpiringSoonWindow,
		HashNamespace:      o.KeysNamespace,
		Resync:             o.Resync,
		MaxPerNamespace:    o.MaxAPIKeysPerNamespace,
		RequestedRotations: keylimit.New(o.AnnotationRotationBurst, o.AnnotationRotationRefill,
			apikey.DefaultRequestedRotationBurst, apikey.DefaultRequestedRotationRefill, o.Clock),
	}).SetupWithManager(mgr)
}
