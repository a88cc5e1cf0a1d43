// Command promql parses PromQL expressions with Prometheus's own parser and
// says what each one selects, for test/monitoring: it reads a JSON array of
// {"source", "expr"} on stdin and writes, for each, the parse error or the
// selectors (metric name and label matchers) and the labels it groups or
// matches on, as JSON on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type query struct {
	Source string `json:"source"`
	Expr   string `json:"expr"`
}

type matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Source    string     `json:"source"`
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
	// Labels are those of by (...), without (...), on (...), ignoring (...)
	// and group_left/right (...).
	Labels []string `json:"labels"`
}

func main() {
	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		fmt.Fprintln(os.Stderr, "promql: reading queries:", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(queries))
	for _, q := range queries {
		out = append(out, inspect(p, q))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "promql:", err)
		os.Exit(2)
	}
}

func inspect(p parser.Parser, q query) result {
	r := result{Source: q.Source, Selectors: []selector{}, Labels: []string{}}
	expr, err := p.ParseExpr(q.Expr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			s := selector{Metric: n.Name, Matchers: []matcher{}}
			for _, m := range n.LabelMatchers {
				if m.Name == labels.MetricName {
					if s.Metric == "" && m.Type == labels.MatchEqual {
						s.Metric = m.Value
					}
					continue
				}
				s.Matchers = append(s.Matchers, matcher{Name: m.Name, Type: m.Type.String(), Value: m.Value})
			}
			r.Selectors = append(r.Selectors, s)
		case *parser.AggregateExpr:
			r.Labels = append(r.Labels, n.Grouping...)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				r.Labels = append(r.Labels, n.VectorMatching.MatchingLabels...)
				r.Labels = append(r.Labels, n.VectorMatching.Include...)
			}
		}
		return nil
	})
	return r
}
