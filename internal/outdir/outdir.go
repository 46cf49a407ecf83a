// Package outdir guards a run's output folder: one run at a time (an OS
// lock), proven writable and roomy enough before anything is bought, and
// files created, replaced and removed without ever going through a symbolic
// link inside it, with the permissions the umask allows.
package outdir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Folders and files inside an output folder.
const (
	ImagesDir   = "images"      // the images of a run
	FilteredDir = "filtered"    // CONTENT_FILTERED images, kept apart
	LockFile    = ".batch.lock" // held by the run using the folder; see Lock
)

// Files are created 0666 and folders 0777 so that the umask decides, as
// for any other program: 0644 and 0755 with the usual umask 022.
const (
	filePerm fs.FileMode = 0o666
	dirPerm  fs.FileMode = 0o777
)

// tempMarker sits between a temp file's base name and its owner:
// ".NAME.tmp-PID-RANDOM", RANDOM being 16 hex digits.
const tempMarker = ".tmp-"

// ErrSymlink is wrapped by every error refusing a symbolic link inside an
// output folder.
var ErrSymlink = errors.New("nothing is written through links inside the output folder")

// Dir is an output folder opened for writing. Its methods take
// slash-separated names relative to it ("images/cats.png"). They refuse a
// symbolic link in place of a folder on the way ("images") and of a file
// they open in place (OpenFile), with an error wrapping ErrSymlink; Rename
// replaces a link at its target name (rename never follows one) and Remove
// removes a link itself. Built on os.Root, they cannot reach outside the
// folder even when a link appears while they run. Files are created 0666
// and folders 0777, less the umask. The folder itself may be a link: it is
// the one the user named. A Dir is safe for concurrent use.
type Dir struct {
	root *os.Root
	pid  int // this process's, in temp names

	mu   sync.Mutex
	self *os.File // the folder itself, kept open by SyncFolder("."); nil before
}

// OpenDir opens the existing folder path.
func OpenDir(path string) (*Dir, error) {
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("open output folder: %w", err)
	}
	return &Dir{root: root, pid: os.Getpid()}, nil
}

// Close releases the folder; files opened through it stay open.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if d.self != nil {
		err = d.self.Close()
		d.self = nil
	}
	return errors.Join(err, d.root.Close())
}

// Sub opens folder, an existing folder of d and not a symbolic link to
// one, as a Dir of its own: its names are relative to folder, and its
// methods do not walk folder's path again, as d's do for every name in
// it. It stays inside d, and is closed apart from it.
func (d *Dir) Sub(folder string) (*Dir, error) {
	if err := d.checkFolders(folder + "/"); err != nil {
		return nil, err
	}
	root, err := d.root.OpenRoot(folder)
	if err != nil {
		return nil, fmt.Errorf("open output folder: %w", d.pathError("open", folder, err))
	}
	return &Dir{root: root, pid: d.pid}, nil
}

// path is name as a path, joined to the folder's, for messages.
func (d *Dir) path(name string) string {
	return filepath.Join(d.root.Name(), filepath.FromSlash(name))
}

// pathError gives err, from an os.Root method or a file opened through
// one, the full path of name.
func (d *Dir) pathError(op, name string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: d.path(name), Err: err}
}

// checkFolders refuses name when a folder on its way is a symbolic link
// or not a folder.
func (d *Dir) checkFolders(name string) error {
	for i := 0; ; {
		j := strings.IndexByte(name[i:], '/')
		if j < 0 {
			return nil
		}
		i += j
		if err := d.checkFolder(name[:i]); err != nil {
			return err
		}
		i++
	}
}

// checkFolder refuses folder unless it is a folder, not a link to one.
func (d *Dir) checkFolder(folder string) error {
	fi, err := d.root.Lstat(folder)
	switch {
	case err != nil:
		return d.pathError("lstat", folder, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: %w", d.path(folder), ErrSymlink)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder", d.path(folder))
	}
	return nil
}

// mkdir makes folder unless it exists, and refuses it when it is a link or
// not a folder.
func (d *Dir) mkdir(folder string) error {
	err := d.root.Mkdir(folder, dirPerm)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create output folder: %w", d.pathError("mkdir", folder, err))
	}
	return d.checkFolder(folder)
}

// CreateTemp creates a new, empty temp file beside name, open for reading
// and writing: ".BASE.tmp-PID-RANDOM" in name's folder, unique to this
// process and call. It returns the file and the temp file's name relative
// to d, for Rename or Remove. Lock removes such files that a dead process
// left behind, and nothing else ever removes another process's.
func (d *Dir) CreateTemp(name string) (*os.File, string, error) {
	if err := d.checkFolders(name); err != nil {
		return nil, "", err
	}
	folder, base := path.Split(name)
	for range 100 {
		tmp := folder + tempName(base, d.pid)
		// O_EXCL: a link in the way is an error, never followed.
		// O_NONBLOCK, which a regular file ignores, spares the four
		// system calls os spends in trying to poll one and giving up.
		f, err := d.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NONBLOCK, filePerm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", d.pathError("create", tmp, err)
		}
		return f, tmp, nil
	}
	return nil, "", fmt.Errorf("create a temp file beside %s: every name tried exists", d.path(name))
}

// Rename renames from to to, replacing to; a symbolic link at to is itself
// replaced, its target untouched.
func (d *Dir) Rename(from, to string) error {
	if err := d.checkFolders(from); err != nil {
		return err
	}
	if err := d.checkFolders(to); err != nil {
		return err
	}
	if err := d.root.Rename(from, to); err != nil {
		return fmt.Errorf("rename %s to %s: %w", d.path(from), d.path(to), unwrapPath(err))
	}
	return nil
}

// Remove removes the file name; a symbolic link there is removed itself,
// its target untouched.
func (d *Dir) Remove(name string) error {
	if err := d.checkFolders(name); err != nil {
		return err
	}
	if err := d.root.Remove(name); err != nil {
		return d.pathError("remove", name, err)
	}
	return nil
}

// SyncFolder makes the entries of folder ("." for d itself) durable, as
// after a rename. A filesystem that cannot sync folders is not an error.
// d itself is opened once and kept open for the next calls, until Close.
func (d *Dir) SyncFolder(folder string) error {
	var f *os.File
	if folder == "." {
		var err error
		if f, err = d.selfFile(); err != nil {
			return d.pathError("sync", folder, err)
		}
	} else {
		if err := d.checkFolder(folder); err != nil {
			return err
		}
		var err error
		if f, err = d.root.Open(folder); err != nil {
			return d.pathError("sync", folder, err)
		}
		defer f.Close()
	}
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return d.pathError("sync", folder, err)
	}
	return nil
}

// selfFile returns the folder itself, opened at the first call.
func (d *Dir) selfFile() (*os.File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.self == nil {
		f, err := d.root.Open(".")
		if err != nil {
			return nil, err
		}
		d.self = f
	}
	return d.self, nil
}

// OpenFile opens the file name with flag (os.O_RDWR|os.O_CREATE, …),
// creating it 0666 less the umask. It refuses a symbolic link (ErrSymlink)
// and anything but a regular file, such as a FIFO that would block.
func (d *Dir) OpenFile(name string, flag int) (*os.File, error) {
	if err := d.checkFolders(name); err != nil {
		return nil, err
	}
	fi, err := d.root.Lstat(name)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("%s is a symbolic link: %w", d.path(name), ErrSymlink)
	case err == nil && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", d.path(name))
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, d.pathError("open", name, err)
	}
	f, err := d.root.OpenFile(name, flag, filePerm)
	if err != nil {
		return nil, d.pathError("open", name, err)
	}
	// A file swapped in after the Lstat: still inside d (os.Root), and
	// regular or refused.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s is not a regular file", d.path(name))
	}
	return f, nil
}

// WriteFileAtomic writes data to the file name: readers see the old file or
// the new one, never a part. It writes a temp file beside name, syncs it,
// renames it over name (a symbolic link there is replaced, never followed)
// and syncs the folder. On failure the temp file is removed.
func (d *Dir) WriteFileAtomic(name string, data []byte) error {
	if err := d.ReplaceFile(name, data); err != nil {
		return err
	}
	return d.SyncFolder(path.Dir(name))
}

// PutFile writes data to the file name, synced, for a caller that syncs
// the folder afterwards (see ReplaceFile): a file created under name
// directly when there is none, else ReplaceFile's temp file renamed over
// it. A crash while a new file is written may leave part of it under name,
// so it is for files whose reader checks what it reads, and that nothing
// names before the folder's sync.
func (d *Dir) PutFile(name string, data []byte) error {
	if err := d.checkFolders(name); err != nil {
		return err
	}
	// O_EXCL: a file or link in the way is replaced instead, never followed.
	f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NONBLOCK, filePerm)
	if errors.Is(err, fs.ErrExist) {
		return d.ReplaceFile(name, data)
	}
	if err != nil {
		return d.pathError("create", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = d.root.Remove(name)
		return d.pathError("write", name, err)
	}
	return nil
}

// ReplaceFile writes data to the file name as WriteFileAtomic does, but
// for syncing the folder: the new file is durable, its name once the
// caller syncs the folder (SyncFolder), as it may do once after several
// renames into it.
func (d *Dir) ReplaceFile(name string, data []byte) (err error) {
	f, tmp, err := d.CreateTemp(name)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close() // a second Close is harmless
			_ = d.root.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return d.Rename(tmp, name)
}

// WriteFileAtomic writes data to the file name as (*Dir).WriteFileAtomic
// does, in name's folder (which may itself be a link: the output folder the
// user named).
func WriteFileAtomic(name string, data []byte) error {
	d, err := OpenDir(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteFileAtomic(filepath.Base(name), data)
}

// OpenFile opens the file name as (*Dir).OpenFile does, in name's folder
// (which may itself be a link: the output folder the user named).
func OpenFile(name string, flag int) (*os.File, error) {
	d, err := OpenDir(filepath.Dir(name))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.OpenFile(filepath.Base(name), flag)
}

// ReadFile reads the file name, refusing a symbolic link and anything but
// a regular file as OpenFile does. A missing file or folder is an error
// wrapping fs.ErrNotExist.
func ReadFile(name string) ([]byte, error) {
	f, err := OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// tempName returns a temp file name for the file base made by process pid:
// ".BASE.tmp-PID-RANDOM".
func tempName(base string, pid int) string {
	return "." + base + tempMarker + strconv.Itoa(pid) + "-" + fmt.Sprintf("%016x", rand.Uint64())
}

// tempPID returns the process id in a name made by tempName, and whether
// name is one.
func tempPID(name string) (int, bool) {
	i := strings.LastIndex(name, tempMarker)
	if i < 1 || name[0] != '.' {
		return 0, false
	}
	pid, random, ok := strings.Cut(name[i+len(tempMarker):], "-")
	if !ok || len(random) != 16 || strings.Trim(random, "0123456789abcdef") != "" ||
		pid == "" || len(pid) > 10 || strings.Trim(pid, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

func unwrapPath(err error) error {
	if le, ok := errors.AsType[*os.LinkError](err); ok {
		return le.Err
	}
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
