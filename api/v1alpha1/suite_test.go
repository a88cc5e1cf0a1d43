package v1alpha1_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keyward/keyward/internal/testenv"
)

// These specs prove the API against a real kube-apiserver: its schema, CEL
// rules and printer columns are evaluated by the server, not by us.
func TestAPI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "API validation suite (envtest)")
}

var (
	env *envtest.Environment
	cfg *rest.Config
	k8s client.Client
	ctx context.Context
)

var _ = BeforeSuite(func() {
	ctx = context.Background()
	s := testenv.StartSuite(GinkgoT(), testenv.Start)
	env, cfg, k8s = s.Env, s.Config, s.Client
})
