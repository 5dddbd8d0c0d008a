#!/bin/sh
# Written by mkheadnode; cloud-init's final stage runs it at every boot. An idle headnode needs
# little memory, so it gives back what the boot left behind: virtio-balloon's free page
# reporting hands free memory to the host in blocks of any size (the kernel's default is 2 MiB
# blocks only, and a boot leaves its free memory in smaller pieces), and the page cache the
# boot filled (cloud-init's Python, the image's packages) is dropped once, with the directory
# and inode caches of every file the boot looked at. Files the PXE stack serves are read again
# on demand.
order=/sys/module/page_reporting/parameters/page_reporting_order
[ ! -w $order ] || echo 0 > $order
sync
echo 3 > /proc/sys/vm/drop_caches
