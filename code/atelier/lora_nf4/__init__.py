"""Chapitre 04, « LoRA et NF4 » (``book/04_lora_nf4.md``).

- ``lora`` : LoRA refait à la main, comparé à peft ;
- ``nf4`` : quantification NF4 refaite à la main, comparée à bitsandbytes ;
- ``quantization`` : chargement en 4 bits avec bitsandbytes (réglages, couches NF4) ;
- ``memory`` : calculatrice de mémoire, confrontée aux modèles chargés ;
- ``chat`` : dialogues, chat template et interface (``python -m atelier.lora_nf4.chat``) ;
- ``sft`` : affinage QLoRA (``python -m atelier.lora_nf4.sft``) ;
- ``results`` : réponses aux questions de test (par lots), part de réponses en français, adaptateur zippé.
"""
