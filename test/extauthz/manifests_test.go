package extauthz_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	// The typed_config types the documented Envoy configurations name,
	// registered for protojson.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
	"github.com/keyward/keyward/test/gatewaytest"
)

// docPath is the document whose blocks these tests check.
const docPath = "../../docs/gateways.md"

// The first lines of docs/gateways.md's blocks.
const (
	markerEnvoyGRPC     = "# Keyward ext_authz for Envoy (gRPC)."
	markerEnvoyHTTP     = "static_resources:"
	markerEnvoyGateway  = "# Keyward ext_authz for Envoy Gateway (SecurityPolicy, gRPC)."
	markerIstioMesh     = "# Keyward ext_authz for Istio: an extension provider of the MeshConfig."
	markerIstioPolicies = "# Keyward ext_authz for Istio: TLS to the key server and the CUSTOM policy."
	markerContour       = "# Keyward ext_authz for Contour (ExtensionService and HTTPProxy)."
	markerGatewayAPI    = "# Keyward ext_authz for the Gateway API (HTTPRoute ExternalAuth filter)."
)

// A gateway's CRDs, from its own Go module at a pinned version and hash,
// downloaded through the Go module proxy by testenv.PeerModule, as
// cert-manager's are (test/install). None of these modules is a dependency
// of Keyward.
type peerCRDs struct {
	module, version, sum string
	// files are the CRD files in the module, globs relative to its root.
	files []string
	// helmWrapped: each file is a Helm template whose only templating is a
	// conditional around the whole file (its first and last lines).
	helmWrapped bool
	// want are CRDs (plural.group) that must be among them.
	want []string
}

var peers = []peerCRDs{
	{
		module: "github.com/envoyproxy/gateway", version: "v1.9.1", sum: "h1:vAVp6/AlBXJ1aOhp1mxL7fNEzVEfjADUguUhm2wzxQY=",
		files: []string{"charts/gateway-crds-helm/templates/generated/*.yaml"}, helmWrapped: true,
		want: []string{"securitypolicies.gateway.envoyproxy.io"},
	},
	{
		module: "sigs.k8s.io/gateway-api", version: "v1.6.3", sum: "h1:lKpJa5bGlraC/QeACvCpsHLdmO6y0iKfzVl6gzaFEYc=",
		files: []string{"config/crd/experimental/gateway.networking.k8s.io_*.yaml", "config/crd/experimental/gateway.networking.x-k8s.io_*.yaml"},
		want:  []string{"httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io", "backendtlspolicies.gateway.networking.k8s.io"},
	},
	{
		module: "istio.io/api", version: "v1.32.0", sum: "h1:37mJvg9I0biYZAEQF+MATs4FNeCpXEIVO3LFpVb6iNM=",
		files: []string{"kubernetes/customresourcedefinitions.gen.yaml"},
		want:  []string{"authorizationpolicies.security.istio.io", "destinationrules.networking.istio.io"},
	},
	{
		module: "github.com/projectcontour/contour", version: "v1.33.8", sum: "h1:QoOfwqWws+CVRFpsRC2+f1DmB5IdurtyUtepIsiWfE0=",
		files: []string{"examples/contour/01-crds.yaml"},
		want:  []string{"extensionservices.projectcontour.io", "httpproxies.projectcontour.io"},
	},
}

// gatherCRDs writes every CustomResourceDefinition of the peers into one
// directory, for envtest, and returns it.
func gatherCRDs(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	n := 0
	for _, p := range peers {
		dir := testenv.PeerModule(t, p.module, p.version, p.sum)
		var names []string
		for _, g := range p.files {
			files, _ := filepath.Glob(filepath.Join(dir, g))
			if len(files) == 0 {
				t.Fatalf("%s@%s has no %s", p.module, p.version, g)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				text := string(b)
				if p.helmWrapped {
					text = unwrapHelm(t, f, text)
				}
				if strings.Contains(text, "{{") {
					t.Fatalf("%s is a template, not a plain CRD", f)
				}
				for _, doc := range splitYAML(text) {
					var o struct {
						Kind     string
						Metadata struct{ Name string }
					}
					if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
						t.Fatalf("%s: %v", f, err)
					}
					if o.Kind != "CustomResourceDefinition" {
						continue // a ValidatingAdmissionPolicy, say
					}
					names = append(names, o.Metadata.Name)
					n++
					if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("%03d-%s.yaml", n, o.Metadata.Name)), []byte(doc), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		for _, w := range p.want {
			if !slices.Contains(names, w) {
				t.Fatalf("%s@%s has no CRD %s (found %v)", p.module, p.version, w, names)
			}
		}
	}
	return out
}

// unwrapHelm removes a chart file's "{{- if … }}" first line and "{{- end }}"
// last line, the only templating it may have.
func unwrapHelm(t *testing.T, file, text string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "{{- if ") || strings.TrimSpace(lines[len(lines)-1]) != "{{- end }}" {
		t.Fatalf("%s is not wrapped in one {{- if }} … {{- end }}", file)
	}
	return strings.Join(lines[1:len(lines)-1], "\n") + "\n"
}

func splitYAML(text string) []string {
	var out []string
	for _, doc := range strings.Split("\n"+text, "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "\n")) != "" && strings.Contains(doc, "kind:") {
			out = append(out, strings.TrimPrefix(doc, "\n"))
		}
	}
	return out
}

// TestGatewayManifestsAreAcceptedWithTheirCRDs applies each Kubernetes block
// of docs/gateways.md's gRPC section with a server-side dry run (strict
// field validation, CEL rules included) to a real API server holding the
// gateways' CRDs: without them, it fails for every object.
func TestGatewayManifestsAreAcceptedWithTheirCRDs(t *testing.T) {
	crds := gatherCRDs(t)
	env := testenv.StartWithPeerCRDs(t, crds)
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	created := map[string]bool{}

	for _, marker := range []string{markerEnvoyGateway, markerIstioPolicies, markerContour, markerGatewayAPI} {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(marker, "# Keyward ext_authz for "), "."), func(t *testing.T) {
			block := gatewaytest.DocumentedBlock(t, docPath, "yaml", marker)
			objs := splitYAML(block)
			if len(objs) == 0 {
				t.Fatal("the block holds no object")
			}
			for _, doc := range objs {
				var o struct{ Metadata struct{ Namespace string } }
				if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
					t.Fatal(err)
				}
				if ns := o.Metadata.Namespace; ns != "" && !created[ns] {
					if _, errOut, err := env.ControlPlane.KubeCtl().Run("create", "namespace", ns); err != nil {
						t.Fatalf("creating the namespace %s: %v %s", ns, err, readAll(errOut))
					}
					created[ns] = true
				}
			}
			cmd := exec.Command(kubectl, append(env.ControlPlane.KubeCtl().Opts, "apply", "--server-side", "--dry-run=server", "-f", "-")...)
			cmd.Stdin = strings.NewReader(block)
			msg, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the API server refused the block: %v\n%s", err, msg)
			}
			t.Logf("%s", msg)
			checkNamesTheKeyServer(t, block)
			// A control: the dry run checks fields, here a misspelt one.
			bad := strings.Replace(block, "\nmetadata:\n", "\nmetadata:\n  labelz: {}\n", 1)
			cmd = exec.Command(kubectl, append(env.ControlPlane.KubeCtl().Opts, "apply", "--server-side", "--dry-run=server", "-f", "-")...)
			cmd.Stdin = strings.NewReader(bad)
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "labelz") {
				t.Fatalf("a misspelt field was accepted (%v): the dry run checks nothing\n%s", err, out)
			}
		})
	}
}

func readAll(r interface{ Read([]byte) (int, error) }) string {
	var b bytes.Buffer
	_, _ = b.ReadFrom(r)
	return b.String()
}

// checkNamesTheKeyServer: a block points at the installed key server's
// Service, namespace and gRPC port (config/manager/key_server.yaml).
func checkNamesTheKeyServer(t *testing.T, block string) {
	t.Helper()
	install, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "manager", "key_server.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(install), "{name: grpc-ext-authz, port: 50051,") {
		t.Fatal("config/manager/key_server.yaml no longer has the Service port grpc-ext-authz 50051 the documented manifests name")
	}
	for _, want := range []string{operator.KeyServerService, "keyward-system", "50051"} {
		if !strings.Contains(block, want) {
			t.Errorf("the block does not name %s", want)
		}
	}
}

// TestIstioMeshConfigIsAcceptedByIstioAPI: MeshConfig is no Kubernetes
// resource; the documented extension provider is read strictly into
// istio.io/api's MeshConfig (hack/tools/meshconfig), as istiod reads it.
func TestIstioMeshConfigIsAcceptedByIstioAPI(t *testing.T) {
	block := gatewaytest.DocumentedBlock(t, docPath, "yaml", markerIstioMesh)
	goBin := testenv.GoBin()
	for name, in := range map[string]string{
		"the documented block":       block,
		"a misspelt field (control)": strings.Replace(block, "failOpen:", "failOpn:", 1),
	} {
		cmd := exec.Command(goBin, "run", ".")
		cmd.Dir = filepath.Join(testenv.RepoRoot(), "hack", "tools", "meshconfig")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
		cmd.Stdin = strings.NewReader(in)
		out, err := cmd.CombinedOutput()
		switch {
		case name == "the documented block" && (err != nil || strings.TrimSpace(string(out)) != "keyward"):
			t.Errorf("%s: %v\n%s", name, err, out)
		case name != "the documented block" && err == nil:
			t.Errorf("%s was accepted: the check checks nothing", name)
		}
	}
}

// TestEnvoyConfigurationsAreValidEnvoyAPI reads docs/gateways.md's Envoy
// configurations (gRPC and HTTP mode) strictly into Envoy's Bootstrap with
// go-control-plane's types, every typed_config too, and runs their
// validation rules (protoc-gen-validate): what Envoy would check of them
// before it started, short of running an Envoy.
func TestEnvoyConfigurationsAreValidEnvoyAPI(t *testing.T) {
	for _, marker := range []string{markerEnvoyGRPC, markerEnvoyHTTP} {
		t.Run(marker, func(t *testing.T) {
			block := gatewaytest.DocumentedBlock(t, docPath, "yaml", marker)
			if err := validEnvoyBootstrap(block); err != nil {
				t.Fatal(err)
			}
			if err := validEnvoyBootstrap(strings.Replace(block, "stat_prefix:", "stat_prefx:", 1)); err == nil {
				t.Fatal("a misspelt field was accepted: the check checks nothing")
			}
			if err := validEnvoyBootstrap(strings.Replace(block, "connect_timeout: 1s", "connect_timeout: -1s", 1)); err == nil {
				t.Fatal("a negative timeout was accepted: the validation rules did not run")
			}
			if err := validEnvoyBootstrap(strings.Replace(block, "stat_prefix: ingress", `stat_prefix: ""`, 1)); err == nil {
				t.Fatal("an empty stat_prefix in a typed_config was accepted: the rules of packed messages did not run")
			}
		})
	}
}

func validEnvoyBootstrap(block string) error {
	js, err := yaml.YAMLToJSON([]byte(block))
	if err != nil {
		return err
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return err
	}
	return validateDeep(b.ProtoReflect())
}

// validateDeep runs m's validation rules, and those of every message packed
// in an Any below it (ValidateAll does not open them).
func validateDeep(m protoreflect.Message) error {
	if v, ok := m.Interface().(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return validateDeep(inner.ProtoReflect())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = validateDeep(mv.Message())
				return err == nil
			})
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validateDeep(v.List().Get(i).Message())
			}
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = validateDeep(v.Message())
		}
		return err == nil
	})
	return err
}

var _ proto.Message = (*bootstrapv3.Bootstrap)(nil)
