// Checks Istio MeshConfig fragments against istio.io/api (test/extauthz),
// in a module of its own so that its dependencies never touch Keyward's
// go.mod.
module github.com/keyward/keyward/hack/tools/meshconfig

go 1.26.0

require (
	google.golang.org/protobuf v1.36.12
	istio.io/api v1.32.0
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/golang/protobuf v1.5.4 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20251213004720-97cd9d5aeac2 // indirect
)
