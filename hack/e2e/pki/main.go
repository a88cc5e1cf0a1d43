// Command pki writes the certificates, keys and service-account key pair of
// the e2e node's control plane into one directory: a cluster CA and a leaf
// per component (kubeadm's names and identities), and, apart from it, the
// TokenReview client CA and kube-apiserver's webhook client certificate that
// docs/kube-apiserver.md tells operators to make.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

type pair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var dir string

func main() {
	var nodeName, nodeIP, serviceIP string
	flag.StringVar(&dir, "dir", "", "output directory")
	flag.StringVar(&nodeName, "node-name", "", "the node's name")
	flag.StringVar(&nodeIP, "node-ip", "", "the node's address")
	flag.StringVar(&serviceIP, "service-ip", "10.96.0.1", "the kubernetes Service's ClusterIP")
	flag.Parse()
	if dir == "" || nodeName == "" || net.ParseIP(nodeIP) == nil {
		fmt.Fprintln(os.Stderr, "pki: -dir, -node-name and -node-ip are required")
		os.Exit(2)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		die(err)
	}
	ca := newCA("keyward-e2e-cluster-ca")
	write("ca", ca)
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	write("apiserver", leaf(ca, "kube-apiserver", nil, server,
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(nodeIP), net.ParseIP(serviceIP)}))
	write("admin", leaf(ca, "keyward-e2e-admin", []string{"system:masters"}, client, nil, nil))
	write("controller-manager", leaf(ca, "system:kube-controller-manager", nil, client, nil, nil))
	write("scheduler", leaf(ca, "system:kube-scheduler", nil, client, nil, nil))
	write("kube-proxy", leaf(ca, "system:kube-proxy", []string{"system:node-proxier"}, client, nil, nil))
	write("kubelet-client", leaf(ca, "system:node:"+nodeName, []string{"system:nodes"}, client, nil, nil))
	write("kubelet-serving", leaf(ca, "system:node:"+nodeName, []string{"system:nodes"}, server,
		[]string{nodeName}, []net.IP{net.ParseIP(nodeIP)}))
	write("apiserver-kubelet-client", leaf(ca, "kube-apiserver-kubelet-client", []string{"system:masters"}, client, nil, nil))

	// The TokenReview client CA is a CA of its own, as the docs require.
	trCA := newCA("keyward-token-review-client-ca")
	write("token-review-client-ca", trCA)
	write("token-review-webhook-client", leaf(trCA, "kube-apiserver", nil, client, nil, nil))

	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		die(err)
	}
	writeKey("sa.key", sa)
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		die(err)
	}
	writePEM("sa.pub", "PUBLIC KEY", pub, 0o644)
}

func newCA(cn string) pair {
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return sign(tmpl, tmpl, key, key)
}

func leaf(ca pair, cn string, orgs []string, usage []x509.ExtKeyUsage, dns []string, ips []net.IP) pair {
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	return sign(tmpl, ca.cert, key, ca.key)
}

func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) pair {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		die(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		die(err)
	}
	return pair{cert, key}
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		die(err)
	}
	return k
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		die(err)
	}
	return n
}

func write(name string, p pair) {
	writePEM(name+".crt", "CERTIFICATE", p.cert.Raw, 0o644)
	writeKey(name+".key", p.key)
}

func writeKey(name string, k *ecdsa.PrivateKey) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		die(err)
	}
	writePEM(name, "PRIVATE KEY", der, 0o600)
}

func writePEM(name, typ string, der []byte, mode os.FileMode) {
	if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		die(err)
	}
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "pki:", err)
	os.Exit(1)
}
