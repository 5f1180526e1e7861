# The modelcar program of model images (x86-64 Linux, no libc): the only executable in the image.
#
# It links /servedmodel/link/root -> /proc/<its pid>/root (the link folder is an emptyDir it shares with the
# model server, in a pod that shares its process namespace), then sleeps in pause() until a signal ends it.
# The model server reads the image's files through that link. modelcar.py embeds the bytes `as` makes of
# this file (.text only) and wraps them in a minimal ELF header; a unit test assembles it again and compares.
# Build by hand: as --64 -o m.o modelcar.S && objcopy -O binary -j .text m.o m.bin
.intel_syntax noprefix
.globl _start
.text
_start:
    mov eax, 39                       # getpid()
    syscall
    lea rsi, [rip + pid_end]          # the decimal pid is written backwards, ending at pid_end
    mov ecx, 10
1:  xor edx, edx
    div rcx
    add dl, 48
    dec rsi
    mov [rsi], dl
    test rax, rax
    jnz 1b
    sub rsi, 6                        # "/proc/" before the digits
    mov dword ptr [rsi], 0x6f72702f   # "/pro"
    mov word ptr [rsi + 4], 0x2f63    # "c/"
    mov rbx, rsi                      # rbx: "/proc/<pid>/root"
    mov eax, 87                       # unlink(link): a restarted container replaces its old link
    lea rdi, [rip + link]
    syscall
    mov eax, 88                       # symlink(rbx, link)
    mov rdi, rbx
    lea rsi, [rip + link]
    syscall
    test rax, rax
    jnz 3f
2:  mov eax, 34                       # pause() until a signal ends us (SIGTERM's default action)
    syscall
    jmp 2b
3:  mov edi, 1                        # exit(1): the kubelet restarts us and says so
    mov eax, 60
    syscall
buf: .space 32
pid_end: .asciz "/root"
link: .asciz "/servedmodel/link/root"
