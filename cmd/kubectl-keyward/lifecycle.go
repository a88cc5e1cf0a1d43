package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// rotate sets keys.keyward.dev/rotate to a fresh value; the controller then
// issues a new version (the previous one keeps its grace period).
func (a *app) rotate(args []string) error {
	var waitFor bool
	var timeout time.Duration
	fs := a.flagSet("rotate")
	fs.BoolVar(&waitFor, "wait", false, "Wait until the new version is issued")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "How long --wait waits")
	c, name, key, err := a.namedKey("rotate", fs, args)
	if err != nil {
		return err
	}
	msg := ""
	switch summary(key) {
	case "Suspended":
		msg = fmt.Sprintf("APIKey %q is suspended: Keyward issues no new version until it is resumed", name)
	case "Expired":
		msg = fmt.Sprintf("APIKey %q has expired: Keyward issues no new version of an expired key", name)
	}
	if msg != "" {
		if waitFor {
			return errors.New(msg)
		}
		fmt.Fprintf(a.s.ErrOut, "Warning: %s.\n", msg)
	}
	if key.Spec.ImportFrom != nil {
		return fmt.Errorf("APIKey %q is imported from Secret %s: rotate the key in that Secret instead", name, key.Spec.ImportFrom.Name)
	}
	if key.Annotations[annotationShownOnce] == "true" {
		fmt.Fprintf(a.s.ErrOut, "Warning: APIKey %q was shown once at creation; the new version is encrypted to that discarded identity "+
			"and nobody can read it, so its holder loses access after the grace period. "+
			"The holder can rotate it instead with POST /v1/keys/current/rotate at the key server.\n", name)
	}
	oldID := key.Status.KeyID
	value := time.Now().UTC().Format(time.RFC3339Nano)
	if value == key.Annotations[kw.AnnotationRotate] {
		value += "-1"
	}
	if err := c.mergePatch(a.ctx, name, map[string]any{"metadata": map[string]any{"annotations": map[string]any{kw.AnnotationRotate: value}}}); err != nil {
		return fmt.Errorf("requesting the rotation of APIKey %q: %w", name, err)
	}
	if !waitFor {
		fmt.Fprintf(a.s.Out, "apikey/%s rotation requested (%s=%s)\n", name, kw.AnnotationRotate, value)
		return nil
	}
	got, err := c.waitKey(a.ctx, name, timeout, func(k *kw.APIKey) (bool, error) {
		return k.Status.RotateRequest == value && k.Status.KeyID != "" && k.Status.KeyID != oldID, nil
	})
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("the rotation of APIKey %q was requested but no new version was issued within %s", name, timeout)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.s.Out, "apikey/%s rotated: key id %s -> %s\n", name, orNone(oldID), got.Status.KeyID)
	return nil
}

func (a *app) suspend(args []string) error { return a.setSuspended("suspend", args, true) }
func (a *app) resume(args []string) error  { return a.setSuspended("resume", args, false) }

func (a *app) setSuspended(cmd string, args []string, suspended bool) error {
	fs := a.flagSet(cmd)
	args, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	name, err := oneName(cmd, args)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	if err := c.mergePatch(a.ctx, name, map[string]any{"spec": map[string]any{"suspended": suspended}}); err != nil {
		return err
	}
	if suspended {
		fmt.Fprintf(a.s.Out, "apikey/%s suspended\n", name)
	} else {
		fmt.Fprintf(a.s.Out, "apikey/%s resumed\n", name)
	}
	return nil
}

// revoke deletes the APIKey after the user typed its name (or --yes); with
// --key-id it ends one previous version instead (revokeVersion).
func (a *app) revoke(args []string) error {
	var yes bool
	var id string
	var timeout time.Duration
	fs := a.flagSet("revoke")
	fs.BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation before deleting the key")
	fs.StringVar(&id, "key-id", "", "Revoke only the previous version with this key id, before its grace period ends; "+
		"the key and its current version stay (no confirmation: the id is the choice)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the deletion, or the version's revocation, to complete")
	args, err := a.parse("revoke", fs, args)
	if err != nil {
		return err
	}
	name, err := oneName("revoke", args)
	if err != nil {
		return err
	}
	if fs.Changed("key-id") && !validKeyID(id) {
		// The value is not echoed: it may be a whole key pasted by mistake.
		return usagef("revoke", "--key-id must be a key id: the letters and digits between a key's prefix and its secret "+
			"(status.previousKeys lists them), at most %d characters", maxKeyIDLen)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	key, err := c.getKey(a.ctx, name)
	if err != nil {
		return err
	}
	if fs.Changed("key-id") {
		return a.revokeVersion(c, key, id, timeout)
	}
	if !yes {
		if !a.s.Interactive {
			return fmt.Errorf("refusing to revoke APIKey %q without confirmation: stdin is not a terminal; pass --yes", name)
		}
		fmt.Fprintf(a.s.ErrOut, "Revoking APIKey %s/%s stops its key (id %s) from validating at once; this cannot be undone.\nType the name of the APIKey to confirm: ",
			key.Namespace, name, orNone(key.Status.KeyID))
		typed, err := bufio.NewReader(io.LimitReader(a.s.In, 1024)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the confirmation: %w", err)
		}
		if strings.TrimSpace(typed) != name {
			return fmt.Errorf("refusing to revoke APIKey %q: the confirmation did not match its name", name)
		}
	}
	if err := c.Delete(a.ctx, key); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("APIKey %q not found in namespace %q", name, c.namespace)
		}
		return fmt.Errorf("revoking APIKey %q: %w", name, err)
	}
	err = wait.PollUntilContextTimeout(a.ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: name}, &kw.APIKey{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("APIKey %q is being deleted but is not gone after %s (is the Keyward operator running?)", name, timeout)
	}
	fmt.Fprintf(a.s.Out, "apikey/%s revoked\n", name)
	return nil
}
