package outdir

import "strings"

// MkdirAll makes folder (slash-separated, relative to d) and each folder on
// its way that does not exist, 0777 less the umask. A symbolic link on the
// way is refused with an error wrapping ErrSymlink, and so is a file.
func (d *Dir) MkdirAll(folder string) error {
	for i := 0; ; {
		j := strings.IndexByte(folder[i:], '/')
		if j < 0 {
			return d.mkdir(folder)
		}
		i += j
		if err := d.mkdir(folder[:i]); err != nil {
			return err
		}
		i++
	}
}
