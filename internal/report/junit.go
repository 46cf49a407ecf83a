package report

import (
	"bufio"
	"cmp"
	"encoding/xml"
	"io"
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

// runJUnit writes r as JUnit XML to w, one test case per job, as the jobs
// pass: the same bytes as encoding the whole junitSuites value, element by
// element.
func runJUnit(w io.Writer, r *Run) error {
	st, err := scanRun(r, nil)
	if err != nil {
		return err
	}
	s := junitSuite{
		Name:    title(r.Name, r.Manifest),
		Tests:   st.jobs,
		Fails:   st.statuses.Failed + st.statuses.Filtered,
		Skipped: st.statuses.Skipped,
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
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(xml.Header)
	enc := xml.NewEncoder(bw)
	enc.Indent("", "  ")
	suites := xml.StartElement{Name: xml.Name{Local: "testsuites"}, Attr: counts("batch", s.Tests, s.Fails, s.Skipped, s.Time)}
	suite := xml.StartElement{Name: xml.Name{Local: "testsuite"}, Attr: counts(s.Name, s.Tests, s.Fails, s.Skipped, s.Time)}
	if s.Timestamp != "" {
		suite.Attr = append(suite.Attr, xml.Attr{Name: xml.Name{Local: "timestamp"}, Value: s.Timestamp})
	}
	if err := enc.EncodeToken(suites); err != nil {
		return err
	}
	if err := enc.EncodeToken(suite); err != nil {
		return err
	}
	props := struct {
		Props []junitProperty `xml:"property"`
	}{s.Props}
	if err := enc.EncodeElement(props, xml.StartElement{Name: xml.Name{Local: "properties"}}); err != nil {
		return err
	}
	testcase := xml.StartElement{Name: xml.Name{Local: "testcase"}}
	err = r.each(func(_ int, j *RunJob) error {
		return enc.EncodeElement(junitCaseOf(j), testcase)
	})
	if err != nil {
		return err
	}
	if err := enc.EncodeToken(suite.End()); err != nil {
		return err
	}
	if err := enc.EncodeToken(suites.End()); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	bw.WriteString("\n")
	return bw.Flush()
}

// counts are the attributes a suite's element starts with, as junitSuites
// and junitSuite encode them.
func counts(name string, tests, fails, skipped int, time string) []xml.Attr {
	attr := func(name, value string) xml.Attr { return xml.Attr{Name: xml.Name{Local: name}, Value: value} }
	out := []xml.Attr{attr("name", name), attr("tests", strconv.Itoa(tests)), attr("failures", strconv.Itoa(fails)),
		attr("errors", "0"), attr("skipped", strconv.Itoa(skipped))}
	if time != "" {
		out = append(out, attr("time", time))
	}
	return out
}

// junitCaseOf is job j's test case.
func junitCaseOf(j *RunJob) junitCase {
	c := junitCase{Name: j.ID, Classname: j.Group}
	c.Props = append(c.Props, junitProperty{"charged_credits", j.Credits.String()})
	if j.PossiblyBilledCredits != 0 {
		c.Props = append(c.Props, junitProperty{"possibly_billed_credits", j.PossiblyBilledCredits.String()})
	}
	c.Props = append(c.Props, operationProps(*j)...)
	c.Props = append(c.Props, promptProps(*j)...)
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
		c.Failure = &junitMessage{Message: summary(*j, "job failed"), Type: cmp.Or(j.Failure, "failed"), Text: j.Error}
	case StatusFiltered:
		c.Failure = &junitMessage{Message: summary(*j, "the API's content filter blocked the image"), Type: "filtered", Text: j.Error}
	case StatusSkipped:
		c.Skipped = &junitMessage{Message: summary(*j, "not run")}
	}
	return c
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
