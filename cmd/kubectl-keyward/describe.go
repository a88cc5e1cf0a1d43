package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// maxEvents is how many recent events describe shows.
const maxEvents = 10

// describe prints one APIKey for a person: never a key or a ciphertext.
func (a *app) describe(args []string) error {
	fs := a.flagSet("describe")
	c, _, key, err := a.namedKey("describe", fs, args)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.s.Out, 0, 8, 2, ' ', 0)
	writeFields(tw, key)
	if err := tw.Flush(); err != nil {
		return err
	}
	events, evErr := recentEvents(a, c, key)
	tw = tabwriter.NewWriter(a.s.Out, 0, 8, 2, ' ', 0)
	writeEvents(tw, events, evErr)
	return tw.Flush()
}

func writeFields(w io.Writer, key *kw.APIKey) {
	sp, st := &key.Spec, &key.Status
	line := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, v) }
	line("Name", key.Name)
	line("Namespace", key.Namespace)
	line("Created", timestamp(&key.CreationTimestamp, "<unknown>"))
	line("Status", summary(key))
	line("Subject", orNone(st.Subject))
	line("Groups", orNone(strings.Join(sp.Groups, ", ")))
	line("Scopes", orNone(strings.Join(sp.Scopes, ", ")))
	access := string(sp.Access)
	if access == "" {
		access = string(kw.AccessReadWrite)
	}
	line("Access", access)
	line("Suspended", fmt.Sprint(sp.Suspended))
	switch {
	case sp.Lifetime != nil:
		line("Lifetime", sp.Lifetime.Duration.String())
	case sp.ExpiresAt != nil:
		line("Expires At (spec)", sp.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if r := sp.Rotation; r != nil {
		grace := "0s"
		if r.GracePeriod != nil {
			grace = r.GracePeriod.Duration.String()
		}
		line("Rotation", fmt.Sprintf("every %s, grace %s", r.Period.Duration, grace))
	} else {
		line("Rotation", "<none>")
	}
	line("Key ID", orNone(st.KeyID))
	line("Key Hint", orNone(st.KeyHint))
	line("Issued", timestamp(st.IssuedAt, "<none>"))
	line("Expires", timestamp(st.ExpiresAt, "never"))
	line("Next Rotation", timestamp(st.NextRotationAt, "<none>"))
	line("Last Used", timestamp(st.LastUsedAt, "never"))
	writeUsage(w, st.Usage, time.Now())
	line("Hash Secret", orNone(st.HashSecretName))
	var delivery []string
	if sp.SecretName != "" {
		delivery = append(delivery, "Secret "+sp.SecretName)
	}
	if sp.ImportFrom != nil {
		delivery = append(delivery, "imported from Secret "+sp.ImportFrom.Name)
	}
	if sp.Delivery != nil {
		delivery = append(delivery, fmt.Sprintf("age (%s)", strings.Join(sp.Delivery.AgeRecipients, ", ")))
	}
	line("Delivery", orNone(strings.Join(delivery, "; ")))
	if d := st.AgeDelivery; d != nil {
		line("Age Delivery", fmt.Sprintf("key id %s, %d recipient(s)", d.KeyID, len(d.Recipients)))
	}
	if key.Annotations[annotationShownOnce] == "true" {
		line("Shown Once", "yes: the key was shown when created; later versions are unreadable (rotate through the key server)")
	}
	if ids := sp.RevokedKeyIDs; len(ids) > 0 {
		line("Revoked Key IDs", strings.Join(ids, ", "))
	}
	if v := key.Annotations[kw.AnnotationRotate]; v != "" {
		line("Rotate Request", fmt.Sprintf("%s (acted on: %s)", v, orNone(st.RotateRequest)))
	}

	fmt.Fprintln(w, "Conditions:")
	if len(st.Conditions) == 0 {
		fmt.Fprintln(w, "  <none>")
	} else {
		fmt.Fprintln(w, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
		for _, c := range st.Conditions {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, ago(&c.LastTransitionTime, "", time.Now()), c.Message)
		}
	}
	fmt.Fprintln(w, "Previous Keys:")
	if len(st.PreviousKeys) == 0 {
		fmt.Fprintln(w, "  <none>")
	} else {
		fmt.Fprintln(w, "  KEY ID\tVALID UNTIL")
		for _, p := range st.PreviousKeys {
			fmt.Fprintf(w, "  %s\t%s\n", p.KeyID, timestamp(&p.ValidUntil, ""))
		}
	}
}

// recentEvents are the newest events about the key, oldest first.
func recentEvents(a *app, c *kubeClient, key *kw.APIKey) ([]eventsv1.Event, error) {
	list := &eventsv1.EventList{}
	if err := c.List(a.ctx, list, client.InNamespace(key.Namespace)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		r := e.Regarding
		if r.Kind == "APIKey" && r.Name == key.Name && (r.UID == "" || r.UID == key.UID) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Before(eventTime(out[j])) })
	if len(out) > maxEvents {
		out = out[len(out)-maxEvents:]
	}
	return out, nil
}

func eventTime(e eventsv1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	default:
		return e.CreationTimestamp.Time
	}
}

func writeEvents(w io.Writer, events []eventsv1.Event, err error) {
	fmt.Fprintln(w, "Events:")
	switch {
	case err != nil:
		fmt.Fprintf(w, "  <unable to list events: %v>\n", err)
	case len(events) == 0:
		fmt.Fprintln(w, "  <none>")
	default:
		now := time.Now()
		fmt.Fprintln(w, "  TYPE\tREASON\tAGE\tMESSAGE")
		for _, e := range events {
			t := metav1.NewTime(eventTime(e))
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", e.Type, e.Reason, ago(&t, "", now), e.Note)
		}
	}
}
