package main

import (
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// list prints APIKeys: ids, hints and times, never a key or a ciphertext.
func (a *app) list(args []string) error {
	var output string
	var all bool
	fs := a.flagSet("list")
	fs.StringVarP(&output, "output", "o", "", "Output format: json, yaml or name (default: a table)")
	fs.BoolVarP(&all, "all-namespaces", "A", false, "List the APIKeys of every namespace")
	args, err := a.parse("list", fs, args)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return usagef("list", "list takes no arguments")
	}
	switch output {
	case "", "json", "yaml", "name":
	default:
		return usagef("list", "-o must be json, yaml or name, got %q", output)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	keys := &kw.APIKeyList{}
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(c.namespace))
	}
	if err := c.List(a.ctx, keys, opts...); err != nil {
		return fmt.Errorf("listing APIKeys: %w", err)
	}
	sort.Slice(keys.Items, func(i, j int) bool {
		x, y := keys.Items[i], keys.Items[j]
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		return x.Name < y.Name
	})

	switch output {
	case "name":
		for _, k := range keys.Items {
			fmt.Fprintf(a.s.Out, "apikey.%s/%s\n", kw.GroupVersion.Group, k.Name)
		}
		return nil
	case "json", "yaml":
		items := make([]any, 0, len(keys.Items))
		for _, k := range keys.Items {
			m, err := metadataOnly(k)
			if err != nil {
				return err
			}
			items = append(items, m)
		}
		return printMap(a.s.Out, map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{}}, output)
	}

	if len(keys.Items) == 0 {
		if all {
			fmt.Fprintln(a.s.ErrOut, "No APIKeys found.")
		} else {
			fmt.Fprintf(a.s.ErrOut, "No APIKeys found in namespace %s.\n", c.namespace)
		}
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(a.s.Out, 0, 8, 3, ' ', 0)
	if all {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tSUBJECT\tKEY ID\tHINT\tLAST USED\tUSED 24H\tEXPIRES\tSTATUS")
	for i := range keys.Items {
		k := &keys.Items[i]
		if all {
			fmt.Fprintf(tw, "%s\t", k.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, orNone(k.Status.Subject), orNone(k.Status.KeyID), orNone(k.Status.KeyHint),
			ago(k.Status.LastUsedAt, "never", now), usedColumn(k.Status.Usage, now), ago(k.Status.ExpiresAt, "never", now), summary(k))
	}
	return tw.Flush()
}
