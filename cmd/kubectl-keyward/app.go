package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the operation failed, or its answer is "no" (verify)
	exitUsage   = 2 // the command line is wrong
	defaultAddr = "http://127.0.0.1:8443"
	envServer   = "KEYWARD_SERVER"
)

// streams are what a command reads and writes; tests pass buffers.
type streams struct {
	In          io.Reader
	Out, ErrOut io.Writer
	// Interactive says In is a terminal a person types into; only then
	// does revoke ask for a confirmation.
	Interactive bool
}

// app is one invocation: its streams, the kubeconfig flags and the key
// server address shared by every command.
type app struct {
	ctx    context.Context
	s      streams
	kube   *genericclioptions.ConfigFlags
	server string
	// serverCA is a PEM file of CA certificates for an https key server.
	serverCA string
}

// usageError is a wrong command line (exit 2).
type usageError struct {
	cmd string
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// errSilent fails with exit 1 after the command already said why on stdout
// (verify of an invalid key).
var errSilent = errors.New("silent failure")

// command is one subcommand.
type command struct {
	use   string // the synopsis
	short string
	run   func(a *app, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"create": {"create apikey NAME [--subject S] [--scope X]... [--group G]... [--expires-in DUR] [--rotate-every DUR --grace DUR] [--read-only] [--output-secret NAME | --age-recipient age1...] [-o yaml|json --dry-run=client] [--timeout 60s]",
			"Create an API key and show it once (or deliver it to a Secret or age recipients)", (*app).create},
		"list":     {"list [-A] [-o json|yaml|name]", "List API keys: metadata only, never keys", (*app).list},
		"describe": {"describe NAME", "Show an API key's fields, conditions, previous keys and recent events", (*app).describe},
		"rotate":   {"rotate NAME [--wait] [--timeout 60s]", "Issue a new key version now (keys.keyward.dev/rotate)", (*app).rotate},
		"suspend":  {"suspend NAME", "Refuse the key until it is resumed", (*app).suspend},
		"resume":   {"resume NAME", "Accept a suspended key again", (*app).resume},
		"revoke": {"revoke NAME [--yes | --key-id ID] [--timeout 30s]",
			"Delete the API key (it stops validating at once), or with --key-id end one previous version before its grace period", (*app).revoke},
		"token": {"token [--access-key AK] (--secret-key-from-stdin | --secret-key-secret NAME) [--lifetime DUR] [--server URL] [-o json]",
			"Exchange an access key pair for a signed token at the key server", (*app).token},
		"verify":  {"verify [--scope X]... [--server URL] [-o json] < key", "Check a key (read from stdin) at the key server; exit 0 if valid, 1 if not", (*app).verify},
		"decrypt": {"decrypt NAME --identity FILE", "Decrypt an API key's age delivery with an age identity file", (*app).decrypt},
		"scan": {"scan [FILE...]", "Find API keys in files (or stdin) and check their checksums offline; exit 1 if a real key is found",
			(*app).scan},
	}
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, s streams, getenv func(string) string) int {
	a := &app{ctx: ctx, s: s, kube: newConfigFlags(), server: getenv(envServer)}
	if a.server == "" {
		a.server = defaultAddr
	}
	err := a.dispatch(args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.Is(err, errSilent):
		return exitFailed
	case errors.As(err, &ue):
		fmt.Fprintf(s.ErrOut, "error: %s\n", ue.msg)
		if ue.cmd != "" {
			fmt.Fprintf(s.ErrOut, "See 'kubectl keyward %s --help'.\n", ue.cmd)
		} else {
			fmt.Fprintln(s.ErrOut, "See 'kubectl keyward --help'.")
		}
		return exitUsage
	default:
		fmt.Fprintf(s.ErrOut, "error: %s\n", err)
		return exitFailed
	}
}

// newConfigFlags are kubectl's kubeconfig flags, without --server/-s: that
// name is the key server's here, and the API server comes from kubeconfig.
func newConfigFlags() *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(true)
	f.APIServer = nil
	// Nothing is cached on disk: the plugin makes no discovery requests
	// beyond the lazy REST mapping of its own kinds.
	f.CacheDir = nil
	return f
}

func (a *app) dispatch(args []string) error {
	global := a.flagSet("")
	global.SetInterspersed(false)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			a.printHelp(a.s.Out)
		}
		return a.flagError("", err)
	}
	rest := global.Args()
	if len(rest) == 0 {
		a.printHelp(a.s.ErrOut)
		return usagef("", "no command given")
	}
	name := rest[0]
	if name == "help" {
		if len(rest) > 1 {
			if c, ok := commands[rest[1]]; ok {
				return c.run(a, []string{"--help"})
			}
		}
		a.printHelp(a.s.Out)
		return nil
	}
	c, ok := commands[name]
	if !ok {
		return usagef("", "unknown command %q", name)
	}
	return c.run(a, rest[1:])
}

// flagSet returns a flag set carrying the kubeconfig flags and --server,
// so they are accepted before or after the command's name. Every set binds
// the same variables, with their current values as defaults.
func (a *app) flagSet(cmd string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubectl keyward "+cmd, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.kube.AddFlags(fs)
	fs.StringVar(&a.server, "server", a.server, "URL of the Keyward key server ($"+envServer+" overrides the default)")
	fs.StringVar(&a.serverCA, "server-ca", a.serverCA, "PEM file of the CA that signed an https key server's certificate (default: the system's roots)")
	return fs
}

// parse parses a command's flags; -h prints the command's help.
func (a *app) parse(cmd string, fs *pflag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			c := commands[cmd]
			global := globalFlags()
			own := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
			fs.VisitAll(func(f *pflag.Flag) {
				if global.Lookup(f.Name) == nil {
					own.AddFlag(f)
				}
			})
			fmt.Fprintf(a.s.Out, "%s\n\nUsage:\n  kubectl keyward %s\n\nFlags:\n%s\nGlobal flags:\n%s",
				c.short, c.use, own.FlagUsages(), global.FlagUsages())
		}
		return nil, a.flagError(cmd, err)
	}
	return fs.Args(), nil
}

func (a *app) flagError(cmd string, err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return err
	}
	return usagef(cmd, "%s", err)
}

// oneName checks the positional arguments are exactly one object name.
// namedKey parses a command's flags, takes the one APIKey name it was given
// and reads that key.
func (a *app) namedKey(cmd string, fs *pflag.FlagSet, args []string) (*kubeClient, string, *kw.APIKey, error) {
	args, err := a.parse(cmd, fs, args)
	if err != nil {
		return nil, "", nil, err
	}
	name, err := oneName(cmd, args)
	if err != nil {
		return nil, "", nil, err
	}
	c, err := a.client()
	if err != nil {
		return nil, "", nil, err
	}
	key, err := c.getKey(a.ctx, name)
	return c, name, key, err
}

func oneName(cmd string, args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", usagef(cmd, "the name of an APIKey is required")
	case 1:
		return args[0], nil
	default:
		return "", usagef(cmd, "one name expected, got %d arguments", len(args))
	}
}

// globalFlags are the flags every command accepts, with their defaults.
func globalFlags() *pflag.FlagSet {
	fresh := &app{kube: newConfigFlags(), server: defaultAddr}
	return fresh.flagSet("")
}

func (a *app) printHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString("kubectl keyward manages Keyward API keys.\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-9s %s\n", n, commands[n].short)
	}
	b.WriteString("\nUsage:\n  kubectl keyward [flags] COMMAND [args] [flags]\n  kubectl keyward COMMAND --help\n\nExit codes: 0 ok, 1 failed (or key invalid), 2 usage error.\n\nGlobal flags:\n")
	b.WriteString(globalFlags().FlagUsages())
	fmt.Fprint(w, b.String())
}
