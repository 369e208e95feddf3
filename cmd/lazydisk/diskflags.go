package main

import (
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/verify"
)

// diskFlags are the flags of the commands that open a disk lazily (read,
// serve): which file of which image, the signature it must carry, and how
// its chunks are fetched and cached.
type diskFlags struct {
	reg         *registryOptions
	file        string
	platform    string
	cacheDir    string
	cacheSize   string
	concurrency int
	skipTOC     bool
	key         string
	sigFormat   string
}

func (d *diskFlags) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&d.file, "file", "", "the file to read (default: the single regular file under /disk/)")
	f.StringVar(&d.platform, "platform", "", "the image of an index to read (os/arch[/variant]; default: this machine's)")
	f.StringVar(&d.cacheDir, "cache-dir", "", "keep verified chunks in this directory too, for later reads and other images")
	f.StringVar(&d.cacheSize, "cache-size", size.Format(disk.DefaultCacheSize), "memory cache of verified chunks")
	f.IntVar(&d.concurrency, "concurrency", disk.DefaultConcurrency, "range requests in flight at once")
	f.BoolVar(&d.skipTOC, "insecure-skip-toc-digest", false, "read a layer that has no TOC digest annotation (its TOC is then not tied to the manifest)")
	f.StringVar(&d.key, "key", "", "require a valid cosign signature by this public key (cosign.pub) and read what it signed")
	f.StringVar(&d.sigFormat, "signature-format", string(verify.SignatureAny), "with --key, the accepted signature forms: any, bundle or legacy")
	_ = cmd.MarkFlagFilename("key", "pub")
	_ = cmd.RegisterFlagCompletionFunc("signature-format", cobra.FixedCompletions([]string{"any", "bundle", "legacy"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("platform", completePlatforms)
	_ = cmd.RegisterFlagCompletionFunc("file", cobra.NoFileCompletions)
	_ = cmd.MarkFlagDirname("cache-dir")
}

// options checks the flags of cmd and returns the disk.Open options they
// ask for, with the registry options. With --key it loads the key.
func (d *diskFlags) options(cmd *cobra.Command) ([]disk.Option, error) {
	cacheSize, err := size.Parse(d.cacheSize)
	if err != nil {
		return nil, usagef("--cache-size: %w", err)
	}
	if d.concurrency < 1 {
		return nil, usagef("--concurrency must be at least 1")
	}
	opts := []disk.Option{
		disk.WithFile(d.file), disk.WithCacheSize(cacheSize), disk.WithCacheDir(d.cacheDir),
		disk.WithConcurrency(d.concurrency),
	}
	opts = append(opts, d.reg.diskOptions()...)
	p, err := parsePlatformFlag(d.platform)
	if err != nil {
		return nil, err
	}
	if p != nil {
		opts = append(opts, disk.WithPlatform(*p))
	}
	if d.skipTOC {
		opts = append(opts, disk.WithInsecureSkipTOCDigest())
	}
	if d.key == "" {
		if cmd.Flags().Changed("signature-format") {
			return nil, usagef("--signature-format needs --key")
		}
		return opts, nil
	}
	if d.skipTOC {
		return nil, usagef("--key and --insecure-skip-toc-digest cannot be combined: the signature covers the TOC only through its digest annotation")
	}
	sf, err := verify.ParseSignatureFormat(d.sigFormat)
	if err != nil {
		return nil, usagef("--signature-format: %w", err)
	}
	v, err := loadVerifier(d.key)
	if err != nil {
		return nil, err
	}
	c, err := verify.NewChecker(v, verify.WithSignatureFormat(sf))
	if err != nil {
		return nil, err
	}
	return append(opts, disk.WithSignature(c)), nil
}

// statsFlags are the --stats and --format of read and serve, whose result
// is statistics printed on stderr: --stats prints them in --format (text or
// json), --stats=json is short for --stats --format json, and --format json
// alone asks for them too.
type statsFlags struct {
	stats  string
	format string
}

func (s *statsFlags) addFlags(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.StringVar(&s.stats, "stats", "", what+" (--stats=json: --stats --format json)")
	f.Lookup("stats").NoOptDefVal = "text"
	f.StringVar(&s.format, "format", "text", "format of the statistics: text or json (json prints them without --stats)")
	_ = cmd.RegisterFlagCompletionFunc("stats", completeTextJSON)
	_ = cmd.RegisterFlagCompletionFunc("format", completeTextJSON)
	cmd.Annotations = map[string]string{annotationJSONOn: "stderr"}
}

// resolve returns the format to print statistics in: "" for none, "text"
// or "json".
func (s *statsFlags) resolve(cmd *cobra.Command) (string, error) {
	if err := checkTextOrJSON("format", s.format); err != nil {
		return "", err
	}
	formatSet := cmd.Flags().Changed("format")
	switch s.stats {
	case "":
		if formatSet && s.format == "json" {
			return "json", nil
		}
		return "", nil
	case "text", "json":
		if formatSet && s.stats == "json" && s.format != "json" {
			return "", usagef("--stats=json and --format %s disagree", s.format)
		}
		if formatSet {
			return s.format, nil
		}
		return s.stats, nil
	}
	return "", usagef("--stats must be text or json, not %q", s.stats)
}

// oneRefArg is exactArgs(1) for read and serve, with a clear error for
// "--stats json", where pflag takes "json" for an argument.
func oneRefArg(cmd *cobra.Command, args []string) error {
	if len(args) == 2 && cmd.Flags().Changed("stats") {
		for _, a := range args {
			if a == "text" || a == "json" {
				return usagef("%q after --stats was taken for an argument: write --stats=%s, or --stats --format %s", a, a, a)
			}
		}
	}
	return exactArgs(1)(cmd, args)
}
