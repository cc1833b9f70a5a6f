// Virtio
