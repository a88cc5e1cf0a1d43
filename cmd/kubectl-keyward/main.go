// Command kubectl-keyward is the kubectl plugin for Keyward API keys:
// `kubectl keyward create apikey NAME` shows a new key once and writes it
// nowhere; list, describe, rotate, suspend, resume and revoke manage keys;
// token and verify talk to the key server; decrypt opens an age delivery;
// scan checks, offline, the checksums of what a secret scanner found.
//
// Install it with `go install ./cmd/kubectl-keyward` and run it as
// `kubectl keyward ...` (or directly as kubectl-keyward).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func main() {
	// controller-runtime's client logs through its global logger; a CLI
	// reports through its own errors, so that logger goes nowhere.
	ctrllog.SetLogger(crzap.New(crzap.WriteTo(io.Discard)))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], streams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		Interactive: isTerminal(os.Stdin),
	}, os.Getenv)
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), the one
// case where the plugin may ask its user a question.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
