/* The pod sandbox's init process: holds the pod's namespaces, reaps
 * orphaned children, exits on SIGINT/SIGTERM. Written for certmint's local
 * e2e node, which cannot pull registry.k8s.io/pause; it does what that
 * image's program does. Built statically so the image needs nothing else. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int signo) {
    (void)signo;
    _exit(0);
}

static void on_child(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("certmint-pause 1");
        return 0;
    }
    if (getpid() != 1) {
        fputs("warning: pause should be the first process\n", stderr);
    }
    struct sigaction term = {.sa_handler = on_term};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
