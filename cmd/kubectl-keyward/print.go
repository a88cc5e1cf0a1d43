package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// printObject prints obj as yaml (the default) or json, without the empty
// fields a declared object does not carry (creationTimestamp, status).
func printObject(w io.Writer, obj any, format string) error {
	m, err := toMap(obj)
	if err != nil {
		return err
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if st, ok := m["status"].(map[string]any); ok && len(st) == 0 {
		delete(m, "status")
	}
	return printMap(w, m, format)
}

func printMap(w io.Writer, m any, format string) error {
	switch format {
	case "json":
		out, err := json.MarshalIndent(m, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	case "yaml", "":
		out, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	default:
		return fmt.Errorf("unknown output format %q", format)
	}
}

func toMap(obj any) (map[string]any, error) {
	if o, ok := obj.(runtime.Object); ok {
		return runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(raw, &m)
}

// metadataOnly is an APIKey as list prints it: no managed fields and no
// ciphertext, only the ids and times that tell keys apart.
func metadataOnly(key kw.APIKey) (map[string]any, error) {
	key.APIVersion, key.Kind = kw.GroupVersion.String(), "APIKey"
	key.ManagedFields = nil
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&key)
	if err != nil {
		return nil, err
	}
	if st, ok := m["status"].(map[string]any); ok {
		if d, ok := st["ageDelivery"].(map[string]any); ok {
			delete(d, "encryptedKey")
		}
	}
	return m, nil
}

// summary is one word for a key's state, from its conditions.
func summary(key *kw.APIKey) string {
	if key.DeletionTimestamp != nil {
		return "Revoking"
	}
	if c := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionSuspended); c != nil && c.Status == metav1.ConditionTrue {
		return "Suspended"
	}
	if c := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionExpired); c != nil && c.Status == metav1.ConditionTrue {
		return "Expired"
	}
	c := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionReady)
	switch {
	case c == nil:
		return "Pending"
	case c.Status == metav1.ConditionTrue && c.Reason == kw.ReasonExpiringSoon:
		return "ExpiringSoon"
	case c.Status == metav1.ConditionTrue:
		return "Ready"
	case c.Reason != "":
		return c.Reason
	default:
		return "NotReady"
	}
}

// ago is "5m ago" for a past instant, "in 3d" for a future one, or none.
func ago(t *metav1.Time, none string, now time.Time) string {
	if t == nil {
		return none
	}
	d := now.Sub(t.Time)
	if d >= 0 {
		return duration.HumanDuration(d) + " ago"
	}
	return "in " + duration.HumanDuration(-d)
}

func timestamp(t *metav1.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339) + " (" + ago(t, "", time.Now()) + ")"
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
