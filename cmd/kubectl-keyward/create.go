package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/keymaterial"
)

type createOptions struct {
	subject       string
	scopes        []string
	groups        []string
	expiresIn     time.Duration
	rotateEvery   time.Duration
	grace         time.Duration
	readOnly      bool
	outputSecret  string
	ageRecipients []string
	output        string
	dryRun        string
	timeout       time.Duration
}

// create is `create apikey NAME`.
func (a *app) create(args []string) error {
	var o createOptions
	fs := a.flagSet("create")
	fs.StringVar(&o.subject, "subject", "", "Identity reported when the key validates (default: the APIKey's name)")
	fs.StringArrayVar(&o.scopes, "scope", nil, "Scope granted to the key, e.g. invoices:read (repeatable)")
	fs.StringArrayVar(&o.groups, "group", nil, "Group reported for the key's subject (repeatable)")
	fs.DurationVar(&o.expiresIn, "expires-in", 0, "The key stops validating this long after its creation (spec.lifetime), e.g. 2160h")
	fs.DurationVar(&o.rotateEvery, "rotate-every", 0, "Issue a new version every period (needs --output-secret or --age-recipient)")
	fs.DurationVar(&o.grace, "grace", 0, "How long the previous version keeps validating after a rotation")
	fs.BoolVar(&o.readOnly, "read-only", false, "The key passes forward-auth only for GET, HEAD and OPTIONS")
	fs.StringVar(&o.outputSecret, "output-secret", "", "Deliver the key to this Secret (data key \"key\") instead of showing it")
	fs.StringArrayVar(&o.ageRecipients, "age-recipient", nil, "Deliver the key encrypted to this age public key (age1...), in status (repeatable)")
	fs.StringVarP(&o.output, "output", "o", "", "With --dry-run=client: print the object as yaml (default) or json")
	fs.StringVar(&o.dryRun, "dry-run", "none", "\"client\" prints the object and creates nothing")
	fs.Lookup("dry-run").NoOptDefVal = "client"
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "How long to wait for the key to be issued")
	args, err := a.parse("create", fs, args)
	if err != nil {
		return err
	}
	if len(args) == 0 || !isAPIKeyResource(args[0]) {
		return usagef("create", "only \"create apikey NAME\" is supported")
	}
	name, err := oneName("create", args[1:])
	if err != nil {
		return err
	}
	if err := o.validate(name); err != nil {
		return err
	}
	key := o.object(name)

	if o.dryRun == "client" {
		if key.Spec.Delivery == nil && key.Spec.SecretName == "" {
			return usagef("create", "an APIKey declared for Git needs a delivery that outlives this command: "+
				"--age-recipient age1... (the key is encrypted to you, in status) or --output-secret NAME (the key lands in a Secret)")
		}
		ns, explicit, err := a.namespace()
		if err != nil {
			return err
		}
		if explicit {
			key.Namespace = ns
		}
		return printObject(a.s.Out, key, o.output)
	}

	c, err := a.client()
	if err != nil {
		return err
	}
	key.Namespace = c.namespace
	if key.Spec.Delivery != nil || key.Spec.SecretName != "" {
		return a.createDelivered(c, key, o.timeout)
	}
	return a.createShownOnce(c, key, o.timeout)
}

func isAPIKeyResource(s string) bool {
	switch strings.ToLower(s) {
	case "apikey", "apikeys", "apik", "apikey.keys.keyward.dev", "apikeys.keys.keyward.dev":
		return true
	}
	return false
}

func (o *createOptions) validate(name string) error {
	switch o.dryRun {
	case "none", "":
		if o.output != "" {
			return usagef("create", "-o/--output is only supported with --dry-run=client: a created key is shown, not printed as an object")
		}
	case "client":
		if o.output != "" && o.output != "yaml" && o.output != "json" {
			return usagef("create", "-o must be yaml or json, got %q", o.output)
		}
	default:
		return usagef("create", "--dry-run must be \"none\" or \"client\", got %q", o.dryRun)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return usagef("create", "invalid APIKey name %q: %s", name, strings.Join(errs, "; "))
	}
	if o.grace != 0 && o.rotateEvery == 0 {
		return usagef("create", "--grace needs --rotate-every")
	}
	if o.expiresIn < 0 || o.rotateEvery < 0 || o.grace < 0 {
		return usagef("create", "durations must be positive")
	}
	if len(o.ageRecipients) > agecrypt.MaxRecipients {
		return usagef("create", "at most %d --age-recipient flags, got %d", agecrypt.MaxRecipients, len(o.ageRecipients))
	}
	for _, r := range o.ageRecipients {
		if _, err := age.ParseX25519Recipient(r); err != nil {
			// A recipient is a public key: quoting it is safe.
			return usagef("create", "--age-recipient %q is not an age X25519 public key (age1...)", r)
		}
	}
	shownOnce := o.outputSecret == "" && len(o.ageRecipients) == 0
	if shownOnce && o.rotateEvery != 0 && o.dryRun != "client" {
		return usagef("create", "--rotate-every needs --output-secret or --age-recipient: a key shown once is encrypted "+
			"to an identity that is discarded, so nobody could read the versions a schedule issues "+
			"(its holder can still rotate it through the key server: POST /v1/keys/current/rotate)")
	}
	return nil
}

// object is the APIKey the flags describe.
func (o *createOptions) object(name string) *kw.APIKey {
	key := &kw.APIKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: kw.GroupVersion.String(), Kind: "APIKey"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: kw.APIKeySpec{
			Subject: o.subject, Scopes: o.scopes, Groups: o.groups, SecretName: o.outputSecret,
		},
	}
	if o.readOnly {
		key.Spec.Access = kw.AccessReadOnly
	}
	if o.expiresIn > 0 {
		key.Spec.Lifetime = &metav1.Duration{Duration: o.expiresIn}
	}
	if o.rotateEvery > 0 {
		key.Spec.Rotation = &kw.RotationPolicy{Period: metav1.Duration{Duration: o.rotateEvery}}
		if o.grace > 0 {
			key.Spec.Rotation.GracePeriod = &metav1.Duration{Duration: o.grace}
		}
	}
	if len(o.ageRecipients) > 0 {
		key.Spec.Delivery = &kw.Delivery{AgeRecipients: o.ageRecipients}
	}
	return key
}

// createDelivered creates a key delivered to a Secret or to the user's own
// age recipients, waits for it, and says where the key is.
func (a *app) createDelivered(c *kubeClient, key *kw.APIKey, timeout time.Duration) error {
	if err := c.Create(a.ctx, key); err != nil {
		return fmt.Errorf("creating APIKey %q: %w", key.Name, err)
	}
	got, err := c.waitKey(a.ctx, key.Name, timeout, issued)
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("APIKey %q was created but not issued within %s (is the Keyward operator running?); see `kubectl keyward describe %s`", key.Name, timeout, key.Name)
	}
	if err != nil {
		return err
	}
	w := a.s.Out
	fmt.Fprintf(w, "apikey/%s created in namespace %s (key id %s, %s)\n", got.Name, got.Namespace, got.Status.KeyID, got.Status.KeyHint)
	if s := got.Spec.SecretName; s != "" {
		fmt.Fprintf(w, "The key is in Secret %s/%s, data key %q:\n  kubectl get secret %s -n %s -o jsonpath='{.data.%s}' | base64 -d\n",
			got.Namespace, s, kw.DeliveryDataKey, s, got.Namespace, kw.DeliveryDataKey)
	}
	if got.Spec.Delivery != nil {
		fmt.Fprintf(w, "The key is encrypted to %d age recipient(s) in status.ageDelivery:\n  kubectl keyward decrypt %s -n %s --identity FILE\n",
			len(got.Spec.Delivery.AgeRecipients), got.Name, got.Namespace)
	}
	return nil
}

// createShownOnce delivers the key to a fresh age identity that exists
// only in this process, decrypts it, and prints it once. Nothing is
// written to disk; the ciphertext left in status is useless once the
// identity is gone with this process.
func (a *app) createShownOnce(c *kubeClient, key *kw.APIKey, timeout time.Duration) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return fmt.Errorf("generating a one-time age identity: %w", err)
	}
	key.Spec.Delivery = &kw.Delivery{AgeRecipients: []string{id.Recipient().String()}}
	key.Annotations = map[string]string{annotationShownOnce: "true"}
	if err := c.Create(a.ctx, key); err != nil {
		return fmt.Errorf("creating APIKey %q: %w", key.Name, err)
	}
	got, err := c.waitKey(a.ctx, key.Name, timeout, issued)
	if err == nil {
		var plain string
		if plain, err = openDelivery(got, id); err == nil {
			fmt.Fprintf(a.s.ErrOut, "apikey/%s created in namespace %s (key id %s).\n"+
				"Warning: this is the only time the key is shown. It was decrypted with a one-time identity that "+
				"existed only in this command's memory; nothing was written to disk and the cluster holds only its hash. Store it now.\n",
				got.Name, got.Namespace, got.Status.KeyID)
			fmt.Fprintln(a.s.Out, plain)
			return nil
		}
	}
	// The identity dies with this process: the object could never be read.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
	defer cancel()
	delErr := c.Delete(cleanup, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
	if errors.Is(err, errTimeout) {
		err = fmt.Errorf("APIKey %q was not issued within %s (is the Keyward operator running?)", key.Name, timeout)
	}
	if delErr != nil && client.IgnoreNotFound(delErr) != nil {
		return fmt.Errorf("%w; deleting the unreadable APIKey also failed (%v): delete it with `kubectl keyward revoke %s --yes`", err, delErr, key.Name)
	}
	return fmt.Errorf("%w; the APIKey was deleted again, since nobody could ever read its key", err)
}

// openDelivery decrypts the current version from status.ageDelivery.
func openDelivery(key *kw.APIKey, ids ...age.Identity) (string, error) {
	d := key.Status.AgeDelivery
	if d == nil {
		return "", fmt.Errorf("APIKey %q has no age delivery in its status (spec.delivery.ageRecipients unset, or not delivered yet)", key.Name)
	}
	plain, err := agecrypt.Decrypt(d.EncryptedKey, ids...)
	if err != nil {
		return "", fmt.Errorf("decrypting the age delivery of APIKey %q: %w", key.Name, err)
	}
	k, err := keymaterial.Parse(plain)
	if err != nil {
		return "", fmt.Errorf("the age delivery of APIKey %q does not hold a well-formed key", key.Name)
	}
	if k.ID != d.KeyID {
		return "", fmt.Errorf("the age delivery of APIKey %q holds key id %s, not %s", key.Name, k.ID, d.KeyID)
	}
	return plain, nil
}
