package report

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"strconv"
)

// JUnit XML, as read by GitHub, GitLab and Jenkins test reporters: one test
// case per job, failed for failed and filtered jobs, skipped for skipped ones.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Errors  int          `xml:"errors,attr"`
	Skipped int          `xml:"skipped,attr"`
	Time    string       `xml:"time,attr,omitempty"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string          `xml:"name,attr"`
	Tests     int             `xml:"tests,attr"`
	Fails     int             `xml:"failures,attr"`
	Errors    int             `xml:"errors,attr"`
	Skipped   int             `xml:"skipped,attr"`
	Time      string          `xml:"time,attr,omitempty"`
	Timestamp string          `xml:"timestamp,attr,omitempty"`
	Props     []junitProperty `xml:"properties>property"`
	Cases     []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string          `xml:"name,attr"`
	Classname string          `xml:"classname,attr"`
	Props     []junitProperty `xml:"properties>property"`
	Failure   *junitMessage   `xml:"failure"`
	Skipped   *junitMessage   `xml:"skipped"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func runJUnit(buf *bytes.Buffer, r *Run) error {
	s := junitSuite{
		Name:  title(r.Name, r.Manifest),
		Tests: len(r.Jobs),
		Cases: make([]junitCase, len(r.Jobs)),
		Props: []junitProperty{
			{"manifest", r.Manifest},
			{"pricing", r.Pricing},
			{"estimated_credits", r.EstimatedCredits.String()},
			{"charged_credits", r.ChargedCredits.String()},
			{"possibly_billed_credits", r.PossiblyBilledCredits.String()},
		},
	}
	if r.BalanceBefore != nil {
		s.Props = append(s.Props, junitProperty{"balance_before", r.BalanceBefore.String()})
	}
	if r.Shard != "" {
		s.Props = append(s.Props, junitProperty{"shard", r.Shard})
	}
	if !r.StartedAt.IsZero() {
		s.Timestamp = r.StartedAt.UTC().Format("2006-01-02T15:04:05")
		if !r.FinishedAt.IsZero() {
			s.Time = strconv.FormatFloat(r.FinishedAt.Sub(r.StartedAt).Seconds(), 'f', 3, 64)
		}
	}
	for i, j := range r.Jobs {
		c := junitCase{Name: j.ID, Classname: j.Group}
		c.Props = append(c.Props, junitProperty{"charged_credits", j.Credits.String()})
		if j.PossiblyBilledCredits != 0 {
			c.Props = append(c.Props, junitProperty{"possibly_billed_credits", j.PossiblyBilledCredits.String()})
		}
		c.Props = append(c.Props, operationProps(j)...)
		c.Props = append(c.Props, promptProps(j)...)
		for _, id := range j.DependsOn {
			c.Props = append(c.Props, junitProperty{"depends_on", id})
		}
		if j.GenerationID != "" {
			c.Props = append(c.Props, junitProperty{"generation_id", j.GenerationID})
		}
		c.Props = append(c.Props,
			junitProperty{"samples", strconv.Itoa(j.Samples)},
			junitProperty{"attempts", strconv.Itoa(j.Attempts)})
		for _, img := range j.Images {
			c.Props = append(c.Props, junitProperty{"image", img.Path})
			if img.RequestID != "" {
				c.Props = append(c.Props, junitProperty{"request_id", img.RequestID})
			}
		}
		switch j.Status {
		case StatusFailed:
			s.Fails++
			c.Failure = &junitMessage{Message: summary(j, "job failed"), Type: cmp.Or(j.Failure, "failed"), Text: j.Error}
		case StatusFiltered:
			s.Fails++
			c.Failure = &junitMessage{Message: summary(j, "the API's content filter blocked the image"), Type: "filtered", Text: j.Error}
		case StatusSkipped:
			s.Skipped++
			c.Skipped = &junitMessage{Message: summary(j, "not run")}
		}
		s.Cases[i] = c
	}
	suites := junitSuites{Name: "batch", Tests: s.Tests, Fails: s.Fails, Skipped: s.Skipped, Time: s.Time, Suites: []junitSuite{s}}
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(buf)
	enc.Indent("", "  ")
	if err := enc.Encode(suites); err != nil {
		return err
	}
	buf.WriteString("\n")
	return nil
}

// operationProps are a job's engine, size and steps (v1), or its service,
// model, size, aspect ratio and output format as far as they are set.
func operationProps(j RunJob) []junitProperty {
	if j.Service == "" {
		return []junitProperty{{"engine", j.Engine}, {"size", size(j.Width, j.Height)}, {"steps", strconv.Itoa(j.Steps)}}
	}
	props := []junitProperty{{"service", j.Service}}
	for _, p := range []junitProperty{{"model", j.Model}, {"aspect_ratio", j.AspectRatio}, {"output_format", j.OutputFormat}} {
		if p.Value != "" {
			props = append(props, p)
		}
	}
	if j.Width > 0 && j.Height > 0 {
		props = append(props, junitProperty{"size", size(j.Width, j.Height)})
	}
	return props
}

// promptProps are a job's prompt, negative prompt and settings (one
// property each, named as the setting), as far as it has them.
func promptProps(j RunJob) []junitProperty {
	var props []junitProperty
	if j.Prompt != "" {
		props = append(props, junitProperty{"prompt", j.Prompt})
	}
	if j.NegativePrompt != "" {
		props = append(props, junitProperty{"negative_prompt", j.NegativePrompt})
	}
	for _, s := range j.Settings {
		props = append(props, junitProperty{s.Name, s.Value})
	}
	return props
}

// summary is a test case's one-line message: the job's error, or fallback
// when it has none.
func summary(j RunJob, fallback string) string {
	if j.Error == "" {
		return fallback
	}
	return oneLine(j.Error, 200)
}
