// Command meshconfig reads a fragment of Istio's MeshConfig as YAML on
// stdin and fails unless istio.io/api's MeshConfig accepts every field of
// it, strictly (unknown fields and wrong types refused), as istiod parses
// its mesh configuration. MeshConfig is no Kubernetes resource, so no API
// server can check it: test/extauthz runs this on docs/gateways.md's Istio
// extension provider. It prints the extension providers' names.
//
// A module of its own, so that istio.io/api never touches Keyward's go.mod.
package main

import (
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	js, err := yaml.YAMLToJSON(in)
	if err != nil {
		fail(err)
	}
	var mc meshconfig.MeshConfig
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &mc); err != nil {
		fail(err)
	}
	for _, p := range mc.GetExtensionProviders() {
		fmt.Println(p.GetName())
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "meshconfig:", err)
	os.Exit(1)
}
