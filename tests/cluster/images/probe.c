/* The test tool of the shell-less image (sandlot.local/static:1), where there is
 * no sh, echo, cat or ps to exec: one static binary with a subcommand for each
 * thing the tests need. Output goes through write(2), unbuffered, so nothing is
 * lost or duplicated across fork() and nothing waits for a flush.
 *
 *   probe exit N                    exit with code N
 *   probe echo ARG...               ARGs joined by spaces, and a newline, to stdout
 *   probe cat                       stdin to stdout until EOF, byte-exact
 *   probe stderr TEXT               TEXT and a newline to stderr
 *   probe write N                   N bytes to stdout: byte i is i % 251, in 64 KiB chunks
 *   probe env NAME                  the value of NAME and a newline; exit 1 if unset
 *   probe pwd                       the working directory and a newline
 *   probe sleep SECONDS             sleep (fractions allowed)
 *   probe spawn-sleepers N SECONDS  fork N children that sleep SECONDS (the first
 *                                   calls setsid() to leave the process group); print
 *                                   their pids, one a line; then sleep SECONDS too.
 *                                   The children keep stdin, stdout and stderr open.
 *   probe ps                        "PID PPID COMM" for each process in /proc
 *
 * A usage error exits 2; a failed system call exits 1 with a message on stderr. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Writes all of buf, across partial writes and interrupted calls. */
static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static _Noreturn void die(const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "probe: %s: %s\n", what, strerror(errno));
    write_all(2, msg, strlen(msg));
    exit(1);
}

static void out(int fd, const char *s) {
    if (write_all(fd, s, strlen(s)) < 0) die("write");
}

static _Noreturn void usage(void) {
    out(2, "usage: probe exit N | echo ARG... | cat | stderr TEXT | write N | env NAME | pwd\n"
           "       | sleep SECONDS | spawn-sleepers N SECONDS | ps\n");
    exit(2);
}

/* A non-negative integer argument, or a usage error. */
static unsigned long long number(const char *s) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') usage();
    return n;
}

/* A non-negative number of seconds, fractions allowed, or a usage error. */
static double seconds(const char *s) {
    char *end;
    double secs = strtod(s, &end);
    if (end == s || *end || !(secs >= 0 && secs < 1e9)) usage();
    return secs;
}

static void sleep_for(double secs) {
    struct timespec left = {.tv_sec = (time_t)secs, .tv_nsec = (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&left, &left) < 0) {
        if (errno != EINTR) die("nanosleep");
    }
}

static int cmd_cat(void) {
    static char buf[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (write_all(1, buf, (size_t)n) < 0) die("write");
    }
}

static int cmd_write(unsigned long long total) {
    /* Byte i of the whole output is i % 251, whatever the chunk boundaries. */
    static char buf[65536];
    unsigned long long done = 0;
    while (done < total) {
        size_t len = total - done < sizeof buf ? (size_t)(total - done) : sizeof buf;
        for (size_t i = 0; i < len; i++) buf[i] = (char)((done + i) % 251);
        if (write_all(1, buf, len) < 0) die("write");
        done += len;
    }
    return 0;
}

static int cmd_spawn_sleepers(unsigned long long n, double secs) {
    char line[32];
    if (n > 1024) usage();
    pid_t pids[n > 0 ? n : 1];
    for (unsigned long long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            if (i == 0 && setsid() < 0) die("setsid"); /* escapes the process group */
            sleep_for(secs);
            _exit(0);
        }
        pids[i] = pid;
    }
    for (unsigned long long i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%d\n", (int)pids[i]);
        out(1, line);
    }
    sleep_for(secs);
    return 0;
}

static int cmd_ps(void) {
    DIR *proc = opendir("/proc");
    if (!proc) die("/proc");
    struct dirent *e;
    while ((e = readdir(proc))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], stat[1024], ppid_text[16];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* the process has gone */
        size_t len = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[len] = 0;
        /* "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses,
         * so it ends at the last ')'. */
        char *open = strchr(stat, '('), *close = strrchr(stat, ')');
        int ppid;
        if (!open || !close || close < open || sscanf(close + 1, " %*c %d", &ppid) != 1) continue;
        *close = 0;
        snprintf(ppid_text, sizeof ppid_text, " %d ", ppid);
        out(1, e->d_name);
        out(1, ppid_text);
        out(1, open + 1);
        out(1, "\n");
    }
    closedir(proc);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *cmd = argv[1];
    int nargs = argc - 2;
    char **args = argv + 2;

    if (!strcmp(cmd, "exit") && nargs == 1) return (int)(number(args[0]) & 255);
    if (!strcmp(cmd, "echo")) {
        for (int i = 0; i < nargs; i++) {
            if (i) out(1, " ");
            out(1, args[i]);
        }
        out(1, "\n");
        return 0;
    }
    if (!strcmp(cmd, "cat") && nargs == 0) return cmd_cat();
    if (!strcmp(cmd, "stderr") && nargs == 1) {
        out(2, args[0]);
        out(2, "\n");
        return 0;
    }
    if (!strcmp(cmd, "write") && nargs == 1) return cmd_write(number(args[0]));
    if (!strcmp(cmd, "env") && nargs == 1) {
        const char *value = getenv(args[0]);
        if (!value) return 1;
        out(1, value);
        out(1, "\n");
        return 0;
    }
    if (!strcmp(cmd, "pwd") && nargs == 0) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) die("getcwd");
        out(1, cwd);
        out(1, "\n");
        return 0;
    }
    if (!strcmp(cmd, "sleep") && nargs == 1) {
        sleep_for(seconds(args[0]));
        return 0;
    }
    if (!strcmp(cmd, "spawn-sleepers") && nargs == 2) return cmd_spawn_sleepers(number(args[0]), seconds(args[1]));
    if (!strcmp(cmd, "ps") && nargs == 0) return cmd_ps();
    usage();
}
