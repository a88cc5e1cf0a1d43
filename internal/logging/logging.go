// Package logging bounds what the operator's logger will print.
//
// client-go logs through the contextual logger it finds in a request's
// context, and at verbosity 8 and above that includes request and response
// bodies — Secrets among them, with delivered keys in base64. A verbosity
// flag must never be a way to print key material, so every Keyward logger is
// capped below that level, whatever --zap-log-level says.
package logging

import "github.com/go-logr/logr"

// MaxVerbosity is the highest V-level that is ever printed: controller-runtime
// logs each reconcile at 5; client-go logs URLs at 6, headers at 7 and
// bodies at 8.
const MaxVerbosity = 5

// Capped returns l with every V-level above MaxVerbosity disabled.
func Capped(l logr.Logger) logr.Logger {
	if l.GetSink() == nil {
		return l
	}
	return logr.New(&cappedSink{LogSink: l.GetSink()})
}

type cappedSink struct{ logr.LogSink }

func (s *cappedSink) Enabled(level int) bool {
	return level <= MaxVerbosity && s.LogSink.Enabled(level)
}

func (s *cappedSink) Info(level int, msg string, kv ...any) {
	if level <= MaxVerbosity {
		s.LogSink.Info(level, msg, kv...)
	}
}

func (s *cappedSink) WithValues(kv ...any) logr.LogSink {
	return &cappedSink{LogSink: s.LogSink.WithValues(kv...)}
}

func (s *cappedSink) WithName(name string) logr.LogSink {
	return &cappedSink{LogSink: s.LogSink.WithName(name)}
}

// WithCallDepth keeps caller annotations pointing at the caller, not at us.
func (s *cappedSink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.LogSink.(logr.CallDepthLogSink); ok {
		return &cappedSink{LogSink: cd.WithCallDepth(depth + 1)}
	}
	return s
}
